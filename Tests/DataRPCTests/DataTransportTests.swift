import Coordinator
import DataRPC
import Determinism
import Foundation
import Logging
import NIOCore
import NIOPosix
import Security
import ShardStore
import Testing

struct KeySealer: Sealer {
    let key: [UInt8]
    init(_ key: [UInt8] = Sodium.randomBytes(Sodium.AEAD.keyBytes)) { self.key = key }
    func seal(_ p: [UInt8]) -> [UInt8] { (try? Sodium.AEAD.seal(p, key: key)) ?? [] }
    func open(_ s: [UInt8]) -> [UInt8]? { try? Sodium.AEAD.open(s, key: key) }
}

/// The data connection over real loopback sockets: a shard goes in and comes back out through
/// a pooled, sealed connection; a peer without the key, or sending garbage, gets nothing and
/// leaves the server serving.
@Suite struct DataTransportTests {
    static let header = [UInt8](repeating: 1, count: 13)
    /// The suite's other tests can hold both cores' cooperative threads for seconds; a
    /// handshake (not what these tests measure) may wait that long.
    static let patient: DataSettings = {
        var s = DataSettings()
        (s.helloTimeout, s.connectTimeout) = (.seconds(60), .seconds(30))
        return s
    }()

    func withServer(_ body: (DataServer, String, KeySealer) async throws -> Void) async throws {
        let root = NSTemporaryDirectory() + "stacks-datatransport-\(UInt64.random(in: 0 ... .max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sealer = KeySealer()
        let server = DataServer(
            host: "127.0.0.1", port: 0, backend: try ShardStore(root: root), sealer: sealer, settings: Self.patient,
            logger: Logger(label: "test"))
        let port = try await server.start()
        try await body(server, "127.0.0.1:\(port)", sealer)
        await server.stop()
    }

    func ref(_ key: String) -> ShardRef {
        ShardRef(bucket: "bkt", key: key, version: ObjectVersion(time: .init(ms: 5, logical: 0), writer: 9), shard: 1, k: 4, m: 2)
    }

    /// Asks the server what it holds of one key, over a fresh client.
    func held(_ address: String, _ sealer: KeySealer) async throws -> DataFrame {
        let client = DataClient(sealer: sealer, settings: Self.patient)
        defer { client.closeAll() }
        return try await client.withConnection(to: address) { c in
            try await c.send(.held(bucket: "bkt", key: "k"))
            return try await c.receive(timeout: .seconds(10))
        }
    }

    @Test func aShardGoesInAndComesBackOverOnePooledConnection() async throws {
        try await withServer { server, address, sealer in
            let client = DataClient(sealer: sealer, settings: Self.patient)
            defer { client.closeAll() }
            var rng = SeededRandom(seed: 3)
            let blocks = (0..<4).map { i in (0..<(300_000 + i)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
            let r = ref("k")
            let prepared = try await client.withConnection(to: address) { c in
                try await c.send(.putShard(r))
                for b in blocks { try await c.send(.stripe(header: Self.header, bytes: b)) }
                try await c.send(.finish(meta: [1, 2, 3]))
                return try await c.receive(timeout: .seconds(10))
            }
            #expect(prepared == .prepared)
            let committed = try await client.withConnection(to: address) { c in
                try await c.send(.commit(r))
                return try await c.receive(timeout: .seconds(10))
            }
            #expect(committed == .ok)
            let (meta, back) = try await client.withConnection(to: address) { c in
                try await c.send(.getShard(r, first: 1, count: 10))
                guard case .meta(let m) = try await c.receive(timeout: .seconds(10)) else { throw DataConnectionError("no meta") }
                var got: [[UInt8]] = []
                while case .stripe(_, let bytes) = try await c.receive(timeout: .seconds(10)) { got.append(bytes) }
                return (m, got)
            }
            #expect(meta == [1, 2, 3])
            #expect(back == Array(blocks[1...]), "stripes 1..<4 come back byte-exact, then end")
            #expect(server.connections == 1, "the three requests went over one pooled connection")
        }
    }

    @Test func aPeerWithoutTheKeyIsRefusedAndTheServerGoesOn() async throws {
        try await withServer { server, address, sealer in
            let stranger = DataClient(sealer: KeySealer())
            await #expect(throws: (any Error).self) {
                try await stranger.withConnection(to: address) { c in try await c.send(.held(bucket: "bkt", key: "k")) }
            }
            let answer = try await held(address, sealer)
            #expect(answer == .versions([]))
        }
    }

    /// A length prefix past the pre-hello bound closes the connection at once, before any
    /// buffering; a server that still answers afterwards proves it neither crashed nor wedged.
    @Test func garbageIsCutOff() async throws {
        try await withServer { server, address, sealer in
            let port = Int(address.split(separator: ":")[1])!
            let raw = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            var junk = ByteBuffer(bytes: [UInt8](repeating: 0xAB, count: 16))
            junk.writeInteger(UInt32.max, endianness: .little)
            junk.writeBytes([UInt8](repeating: 0xCD, count: 4096))
            try await raw.writeAndFlush(junk)
            let closed = try await withThrowingTaskGroup(of: Bool.self) { g in
                g.addTask {
                    try await raw.closeFuture.get(); return true
                }
                g.addTask {
                    try await Task.sleep(for: .seconds(10)); return false
                }
                defer { g.cancelAll() }
                return try await g.next()!
            }
            raw.close(promise: nil)
            #expect(closed, "the server closed a connection that sent garbage")
            let answer = try await held(address, sealer)
            #expect(answer == .versions([]))
        }
    }

    struct Authority: PeerAuthority {
        let identity: NodeHandshake.Identity?
        var removed: Set<String> = []
        func admit(_ c: NodeCredential) -> String? { removed.contains(c.node) ? "removed from the cluster" : nil }
    }

    static func member(_ cluster: ClusterKey, _ name: String, id: String = "c1") -> NodeHandshake.Identity {
        let k = NodeKey.generate()
        return NodeHandshake.Identity(
            clusterKey: cluster.publicKey, credential: cluster.issue(clusterID: id, node: name, publicKey: k.publicKey, role: .all, issuedMs: 1)!, nodeKey: k)
    }

    /// A stranger who connects and sends nothing holds its slot only until the hello deadline:
    /// the server closes it (the socket reads EOF), and keeps serving.
    @Test func aSilentConnectionIsClosedAtTheHelloDeadline() async throws {
        let root = NSTemporaryDirectory() + "stacks-datatransport-\(UInt64.random(in: 0 ... .max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        var settings = DataSettings()
        settings.helloTimeout = .milliseconds(300)
        let server = DataServer(
            host: "127.0.0.1", port: 0, backend: try ShardStore(root: root), sealer: KeySealer(), settings: settings, logger: Logger(label: "test"))
        let port = try await server.start()
        let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        let started = ContinuousClock.now
        try await silent.closeFuture.get()  // closed by the server, not by us
        #expect(ContinuousClock.now - started < .seconds(30))
        for _ in 0..<100 where server.connections > 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(server.connections == 0)
        await server.stop()
    }

    /// Between credentialed nodes the connection is mutually authenticated; a peer with only the
    /// cluster's old shared key, another cluster's credential or a removed node's is refused at
    /// the handshake and counted, and the server goes on serving members.
    @Test func credentialedNodesTalkAndEveryOtherPeerIsRefused() async throws {
        let root = NSTemporaryDirectory() + "stacks-datatransport-\(UInt64.random(in: 0 ... .max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cluster = ClusterKey.generate(), sealer = KeySealer()
        let server = DataServer(
            host: "127.0.0.1", port: 0, backend: try ShardStore(root: root), sealer: sealer,
            authority: Authority(identity: Self.member(cluster, "s"), removed: ["gone"]), settings: Self.patient, logger: Logger(label: "test"))
        let address = "127.0.0.1:\(try await server.start())"
        func ask(_ authority: Authority?) async throws -> (DataFrame, String?) {
            let client = DataClient(sealer: sealer, authority: authority, settings: Self.patient)
            defer { client.closeAll() }
            return try await client.withConnection(to: address) { c in
                try await c.send(.held(bucket: "bkt", key: "k"))
                return (try await c.receive(timeout: .seconds(10)), c.peer?.node)
            }
        }
        let (answer, peer) = try await ask(Authority(identity: Self.member(cluster, "c")))
        #expect(answer == .versions([]) && peer == "s")
        #expect(server.handshakesRefused == 0)
        let refused: [(String, Authority?)] = [
            ("only the shared key", nil), ("another cluster", Authority(identity: Self.member(ClusterKey.generate(), "c"))),
            ("another cluster id", Authority(identity: Self.member(cluster, "c", id: "c2"))),
            ("a removed node", Authority(identity: Self.member(cluster, "gone"))),
        ]
        for (n, (what, authority)) in refused.enumerated() {
            await #expect(throws: (any Error).self, "\(what)") { _ = try await ask(authority) }
            // The server counts once it has read the peer's attempt.
            for _ in 0..<200 where server.handshakesRefused < n + 1 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(server.handshakesRefused == n + 1, "\(what)")
        }
        #expect(try await ask(Authority(identity: Self.member(cluster, "c2"))).0 == .versions([]))
        // A client asking for node "t" whose address answers as "s" gets no connection, pooled or new.
        let client = DataClient(sealer: sealer, authority: Authority(identity: Self.member(cluster, "c")), settings: Self.patient)
        defer { client.closeAll() }
        client.release(try await client.connect(to: address, node: "s"), to: address)
        await #expect(throws: DataConnectionError.self) { _ = try await client.connect(to: address, node: "t") }
        #expect(client.wrongPeers == 1)
        #expect(try await client.withConnection(to: address, node: "s") { $0.peer?.node } == "s")
        await server.stop()
    }
}
