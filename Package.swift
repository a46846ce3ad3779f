// swift-tools-version:6.1
// Stacks: one binary per node; see docs/ARCHITECTURE.md for the module map.
import Foundation
import PackageDescription

/// tools/fuzz sets STACKS_FUZZ=1 (in its own build directory): the project's modules get
/// libFuzzer's coverage instrumentation and AddressSanitizer, and the StacksFuzz driver exists.
let fuzzing = ProcessInfo.processInfo.environment["STACKS_FUZZ"] == "1"
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)] + (fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"])] : [])

func system(_ name: String, _ pkg: String, _ apt: String) -> Target {
    .systemLibrary(name: name, pkgConfig: pkg, providers: [.apt([apt])])
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
    ],
    targets: [
        // C libraries from Debian, each wrapped by exactly one Swift file.
        system("CSodium", "libsodium", "libsodium-dev"),
        system("CLZ4", "liblz4", "liblz4-dev"),
        system("CISAL", "libisal", "libisal-dev"),
        system("CLibvirt", "libvirt", "libvirt-dev"),
        system("COpenSSL", "libcrypto", "libssl-dev"),

        // Domain modules. Dependencies point one way: Node → (S3, Objects, Compute, Gossip, Cluster → Raft, RaftLog) → (ChunkStore, Erasure, Security) → C.
        .target(name: "Security", dependencies: ["CSodium", "COpenSSL"], swiftSettings: strict),
        .target(name: "Erasure", dependencies: ["CISAL"], swiftSettings: strict),
        .target(name: "ChunkStore", dependencies: ["Erasure", "CLZ4"], swiftSettings: strict),
        .target(name: "Objects", dependencies: ["ChunkStore", "Security"], swiftSettings: strict),
        .target(name: "S3", dependencies: [
            "Objects", "Security",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "Determinism", swiftSettings: strict),
        .target(name: "Gossip", dependencies: ["Determinism"], swiftSettings: strict),
        .target(name: "Raft", dependencies: ["Determinism"], swiftSettings: strict),
        .target(name: "RaftLog", dependencies: ["Raft", "ChunkStore", "Erasure"], swiftSettings: strict),
        .target(name: "Compute", dependencies: ["CLibvirt"], swiftSettings: strict),
        // The cluster-state machine and the Raft transport's frame encoding (pure, no I/O).
        .target(name: "Cluster", dependencies: ["Raft", "ChunkStore"], swiftSettings: strict),
        .target(name: "Node", dependencies: [
            "S3", "Objects", "Compute", "Security", "Gossip", "ChunkStore", "Raft", "RaftLog", "Cluster",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .executableTarget(name: "stacks", dependencies: [
            "Node",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        .testTarget(name: "SecurityTests", dependencies: ["Security"], swiftSettings: strict),
        .testTarget(name: "ErasureTests", dependencies: ["Erasure", "Determinism"], swiftSettings: strict),
        .testTarget(name: "ChunkStoreTests", dependencies: ["ChunkStore"], swiftSettings: strict),
        .testTarget(name: "ObjectsTests", dependencies: ["Objects"], swiftSettings: strict),
        .testTarget(name: "S3Tests", dependencies: ["S3"], swiftSettings: strict),
        .testTarget(name: "GossipTests", dependencies: ["Gossip"], swiftSettings: strict),
        .testTarget(name: "RaftTests", dependencies: ["Raft"], swiftSettings: strict),
        .testTarget(name: "RaftLogTests", dependencies: ["RaftLog", "Raft", "ChunkStore"], swiftSettings: strict),
        .testTarget(name: "ComputeTests", dependencies: ["Compute"], swiftSettings: strict),
        .testTarget(name: "NodeTests", dependencies: [
            "Node", "Cluster", "Raft", "Gossip", "Objects", "S3",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
    ]
)

if fuzzing {
    package.targets.append(.executableTarget(
        name: "StacksFuzz", dependencies: ["S3", "Objects", "ChunkStore", "Cluster", "Gossip", "RaftLog"], path: "Tests/Fuzz", exclude: ["corpus"],
        swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])],
        linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]))
}
