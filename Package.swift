// swift-tools-version:6.1
// Stacks: one binary per node; see docs/ARCHITECTURE.md for the module map.
import Foundation
import PackageDescription

/// tools/fuzz sets STACKS_FUZZ=1 (in its own build directory): the project's modules get
/// libFuzzer's coverage instrumentation and AddressSanitizer, and the StacksFuzz driver exists.
let fuzzing = ProcessInfo.processInfo.environment["STACKS_FUZZ"] == "1"
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)] + (fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"])] : [])

func system(_ name: String, _ pkg: String, _ apt: String, _ path: String) -> Target {
    .systemLibrary(name: name, path: path, pkgConfig: pkg, providers: [.apt([apt])])
}

let package = Package(
    name: "stacks",
    platforms: [.macOS(.v14)],
    products: [.executable(name: "stacks", targets: ["stacks"])],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // The tree shows the planes: Sources/Shims (C libraries from Debian, each wrapped by exactly one
        // Swift file), Support, Security, Membership (gossip), Control (Raft), Data (objects, S3),
        // Compute, Node (composition, config, admin API) and stacks (the CLI). In each plane a pure
        // core (no I/O, injected time and randomness) and a shell that does the I/O.
        system("CSodium", "libsodium", "libsodium-dev", "Sources/Shims/CSodium"),
        system("CLZ4", "liblz4", "liblz4-dev", "Sources/Shims/CLZ4"),
        system("CISAL", "libisal", "libisal-dev", "Sources/Shims/CISAL"),
        system("CLibvirt", "libvirt", "libvirt-dev", "Sources/Shims/CLibvirt"),
        system("COpenSSL", "libcrypto", "libssl-dev", "Sources/Shims/COpenSSL"),
        system("CSQLite", "sqlite3", "libsqlite3-dev", "Sources/Shims/CSQLite"),

        // Dependencies point one way: Node → (S3, Objects, Compute, Control → Membership) → cores →
        // (ChunkStore, Erasure, Security, Determinism) → C.
        .target(name: "Determinism", path: "Sources/Support/Determinism", swiftSettings: strict),
        // Little-endian binary coding with one decode error for every wire and disk format.
        .target(name: "Support", path: "Sources/Support/Coding", swiftSettings: strict),
        // CRC32C and CRC32 on ISA-L's kernels, for every checksummed record and block.
        .target(name: "Checksum", dependencies: ["CISAL"], path: "Sources/Support/Checksum", swiftSettings: strict),
        // Thin POSIX file I/O (atomic writes, fsync of directories) with one error type.
        .target(name: "Files", dependencies: ["Support"], path: "Sources/Support/Files", swiftSettings: strict),
        // SQLite connections and statements (the shard store's sorted key index).
        .target(name: "SQLite", dependencies: ["CSQLite"], path: "Sources/Support/SQLite", swiftSettings: strict),
        // LZ4 block compression (shard blocks, gossip state).
        .target(name: "Compression", dependencies: ["CLZ4", "Support"], path: "Sources/Support/Compression", swiftSettings: strict),
        // Metrics through swift-metrics, exported by swift-prometheus (help text per series).
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ], path: "Sources/Support/Telemetry", swiftSettings: strict),
        .target(name: "Security", dependencies: ["CSodium", "COpenSSL", "Support"], swiftSettings: strict),
        // Hummingbird responders driven in process, as its testing module drives a router; tests only.
        .target(
            name: "InProcessHTTP",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ], path: "Sources/Support/InProcessHTTP", swiftSettings: strict),
        // The simulation kit the cores' tests share (network, clocks, disk, seeds); tests only.
        .target(name: "Simulation", dependencies: ["Determinism"], path: "Sources/Support/Simulation", swiftSettings: strict),

        // Membership plane: the SWIM + Lifeguard core, and its UDP shell with the keyring.
        .target(name: "Gossip", dependencies: ["Determinism", "Support"], path: "Sources/Membership/Gossip", swiftSettings: strict),
        .target(
            name: "Membership",
            dependencies: [
                "Gossip", "Security", "Support", "Files", "Compression", "Telemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Sources/Membership/Service", swiftSettings: strict),

        // Control plane: the Raft core, its write-ahead log, the cluster-state machine and frame
        // encoding (pure), and the Raft shell (TCP transport, request routing, snapshots).
        .target(name: "Raft", dependencies: ["Determinism"], path: "Sources/Control/Raft", swiftSettings: strict),
        .target(name: "RaftLog", dependencies: ["Support", "Raft", "Files", "Checksum"], path: "Sources/Control/RaftLog", swiftSettings: strict),
        .target(name: "Cluster", dependencies: ["Support", "Determinism", "Raft", "Placement"], path: "Sources/Control/Cluster", swiftSettings: strict),
        .target(
            name: "Control",
            dependencies: [
                "Membership", "Gossip", "Raft", "RaftLog", "Cluster", "Security", "Support", "Files", "Telemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Sources/Control/Service", swiftSettings: strict),

        // Data plane: erasure coding, shard files, the object store and the S3 responder.
        .target(
            name: "Erasure", dependencies: ["CISAL", "Checksum", "Compression", "Support", "Determinism"], path: "Sources/Data/Erasure", swiftSettings: strict),
        .target(name: "ChunkStore", dependencies: ["Support", "Files", "Checksum", "Compression"], path: "Sources/Data/ChunkStore", swiftSettings: strict),
        .target(name: "Objects", dependencies: ["Support", "Files", "ChunkStore", "Security"], path: "Sources/Data/Objects", swiftSettings: strict),
        .target(
            name: "S3",
            dependencies: [
                "Objects", "ChunkStore", "Checksum", "Files", "Security", "Determinism", "Telemetry", "DataPlane",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Sources/Data/S3", swiftSettings: strict),

        // `stacks bench s3`: an S3 load generator for any endpoint (SigV4, keep-alive HTTP/1.1, HdrHistogram).
        .target(
            name: "S3Bench",
            dependencies: [
                "S3", "Determinism",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ], path: "Sources/Data/S3Bench", swiftSettings: strict),

        // Objects spread over the cluster: PUT streams stripes to the layout's nodes and commits in two
        // phases; GET reads k shards back, standing in parity for a node that fails.
        .target(
            name: "DataPlane",
            dependencies: [
                "DataRPC", "Coordinator", "Erasure", "Checksum", "Objects", "Determinism", "Support",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Sources/Data/Plane", swiftSettings: strict),
        .testTarget(
            name: "DataPlaneTests",
            dependencies: [
                "DataPlane", "DataRPC", "Coordinator", "ShardStore", "Objects", "Security", "Determinism",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // This node's shards of object versions: temporary, committed, reverted; paths from hashes.
        .target(
            name: "ShardStore", dependencies: ["ChunkStore", "Coordinator", "Determinism", "Files", "Security", "SQLite"], path: "Sources/Data/ShardStore",
            swiftSettings: strict),
        .testTarget(name: "ShardStoreTests", dependencies: ["ShardStore", "ChunkStore", "Coordinator", "Determinism", "Files"], swiftSettings: strict),
        // The data connection between nodes: its server's protocol (frames in, answers out), and the
        // sealed TCP shell both ends use (server, pooled client).
        .target(
            name: "DataRPC",
            dependencies: [
                "Coordinator", "ShardStore", "ChunkStore", "Files", "Security", "Support",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Sources/Data/RPC", swiftSettings: strict),
        .testTarget(
            name: "DataRPCTests",
            dependencies: [
                "DataRPC", "Coordinator", "ShardStore", "Determinism", "Files", "Security",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Object versions (hybrid clock) and the read's choice among the nodes' answers, pure.
        .target(name: "Coordinator", dependencies: ["Determinism", "Support"], path: "Sources/Data/Coordinator", swiftSettings: strict),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Determinism", "Simulation", "Support"], swiftSettings: strict),
        // Where each partition's shards live: weighted rendezvous over zones, pure.
        .target(name: "Placement", dependencies: ["Determinism"], path: "Sources/Data/Placement", swiftSettings: strict),
        .testTarget(name: "PlacementTests", dependencies: ["Placement", "Determinism", "Simulation"], swiftSettings: strict),

        // Compute plane.
        .target(name: "Compute", dependencies: ["CLibvirt"], path: "Sources/Compute/Hypervisor", swiftSettings: strict),

        // Composition, config and the admin API.
        .target(
            name: "Node",
            dependencies: [
                "S3", "Objects", "Compute", "Security", "Determinism", "Gossip", "Membership", "Control", "Files", "Raft", "Cluster", "Telemetry",
                "DataPlane", "DataRPC", "ShardStore", "Placement",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ], swiftSettings: strict),
        .executableTarget(
            name: "stacks",
            dependencies: [
                "Node", "Membership", "Control", "Cluster", "Erasure", "Security", "S3Bench", "ShardStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ], swiftSettings: strict),

        .testTarget(name: "SecurityTests", dependencies: ["Security"], swiftSettings: strict),
        .testTarget(name: "ErasureTests", dependencies: ["Erasure", "Checksum", "Determinism", "Support", "Simulation"], swiftSettings: strict),
        .testTarget(name: "ChunkStoreTests", dependencies: ["ChunkStore", "Files", "Checksum", "Support"], swiftSettings: strict),
        .testTarget(name: "ObjectsTests", dependencies: ["Objects", "Files", "Support"], swiftSettings: strict),
        .testTarget(
            name: "S3Tests",
            dependencies: [
                "S3", "S3Bench", "Objects", "Security", "InProcessHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ], swiftSettings: strict),
        .testTarget(name: "GossipTests", dependencies: ["Gossip", "Simulation"], exclude: ["testdata"], swiftSettings: strict),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "Cluster", "Determinism", "Simulation"], exclude: ["testdata"], swiftSettings: strict),
        .testTarget(name: "RaftLogTests", dependencies: ["RaftLog", "Raft", "Files", "Simulation"], swiftSettings: strict),
        .testTarget(name: "ComputeTests", dependencies: ["Compute"], swiftSettings: strict),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "Node", "Membership", "Control", "Cluster", "Raft", "Gossip", "Objects", "S3", "Files", "Telemetry", "InProcessHTTP", "Simulation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], swiftSettings: strict),
    ]
)

if fuzzing {
    package.targets.append(
        .executableTarget(
            name: "StacksFuzz",
            dependencies: [
                "S3", "Objects", "ChunkStore", "Erasure", "Coordinator", "DataPlane", "Files", "Checksum", "Support", "Cluster", "Gossip", "RaftLog",
            ],
            path: "Tests/Fuzz", exclude: ["corpus"],
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]))
}
