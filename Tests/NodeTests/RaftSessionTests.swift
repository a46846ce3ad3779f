import Cluster
import Foundation
import Logging
import Objects
import Raft
import S3
import Security
import Testing

@testable import Control
@testable import Gossip
@testable import Membership
@testable import Node

/// A sealed Raft frame is good on one connection, once, in order: a recorded frame replayed
/// on a new connection or again on its own is refused, whatever its request id.
@Suite struct RaftSessionTests {
    let keyring = try! Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))

    func frame(_ id: UInt64) -> [UInt8] {
        RaftWire.encode(
            AddressedFrame(
                from: "a", fromAddress: "127.0.0.1:1", cluster: "c", to: "b",
                frame: .forward(Request(id: RequestID(hi: 1, lo: id), command: .putAccessKey(id: "AK", secret: "s")).encoded)))
    }

    @Test func framesBindToTheirConnectionAndPosition() throws {
        let first = Sodium.randomBytes(RaftSession.challengeBytes), second = Sodium.randomBytes(RaftSession.challengeBytes)
        let hello = keyring.seal(RaftSession.bind(challenge: first, seq: 0, RaftSession.helloBody))
        #expect(hello.count <= RaftSession.helloMaxBytes)
        #expect(RaftSession.unbind(try #require(keyring.open(hello)), challenge: first, seq: 0) == RaftSession.helloBody)
        #expect(
            RaftSession.unbind(try #require(keyring.open(hello)), challenge: second, seq: 0) == nil, "a recorded hello proves nothing on another connection")

        let recorded = keyring.seal(RaftSession.bind(challenge: first, seq: 1, frame(9)))
        let plain = try #require(keyring.open(recorded))
        #expect(RaftSession.unbind(plain, challenge: first, seq: 1) == frame(9))
        #expect(RaftSession.unbind(plain, challenge: first, seq: 2) == nil, "replayed later on its own connection")
        #expect(RaftSession.unbind(plain, challenge: second, seq: 1) == nil, "replayed on a new connection")
        #expect(RaftSession.unbind(Array(plain.prefix(20)), challenge: first, seq: 1) == nil)
        #expect(RaftSession.unbind([], challenge: first, seq: 0) == nil)
    }
}

/// Bounds on what peers and clients can make a node hold, on a RaftService that is not running
/// (so nothing it is asked ever commits, and everything waits).
@Suite struct RaftBoundsTests {
    static func raft(_ settings: RaftServiceSettings, in dir: String) throws -> RaftService {
        let keyring = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
        return try RaftService(
            name: "a", directory: dir, listen: ListenAddress("127.0.0.1:2")!, bootstrap: true,
            gossip: Fixtures.idleGossip(in: dir, keyring: keyring), keyring: keyring, settings: settings,
            logger: Logger(label: "test"), onApply: { _, _ in }, onRestore: { _ in })
    }

    /// Frames under ever new names must not grow the heard-at maps without end, and peers the
    /// node needs (Raft configuration, gossip members) stay remembered.
    @Test func heardAtMapsStopAtTheirBoundAndKeepKnownPeers() async throws {
        let dir = try Fixtures.temporaryDirectory("raft-bounds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var settings = RaftServiceSettings()
        settings.maxPeersHeard = 8
        let raft = try Self.raft(settings, in: dir)
        let (count, known, latest) = try await raft.loop.submit {
            raft.members["m"] = Member(
                name: "m", address: "127.0.0.1:3", status: .alive, incarnation: Incarnation(1), tags: [:],
                since: Instant(nanoseconds: 0))
            raft.remember("m", at: "127.0.0.1:4")
            for i in 0..<1000 { raft.remember("invented-\(i)", at: "127.0.0.1:\(1000 + i)") }
            return (max(raft.lastHeard.count, raft.heardAt.count), raft.heardAt["m"], raft.lastHeard["invented-999"] != nil)
        }.get()
        #expect(count <= 8, "\(count) peers remembered; the bound is 8")
        #expect(known == "127.0.0.1:4", "a gossip member was forgotten")
        #expect(latest, "the latest peer heard is not remembered")
    }

    /// Past `maxWaiting` a change is refused at once and S3 tells the client 503 SlowDown; those
    /// within the bound wait, and time out (on the next tick) as unavailable.
    @Test(.timeLimit(.minutes(1))) func changesPastMaxWaitingAreRefusedAsSlowDown() async throws {
        let dir = try Fixtures.temporaryDirectory("raft-bounds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var settings = RaftServiceSettings()
        settings.maxWaiting = 3
        settings.requestTimeout = Span(nanoseconds: 0)  // they expire at the first tick after they were queued
        let raft = try Self.raft(settings, in: dir)
        let store = try ObjectStore(root: "\(dir)/store", clock: { 0 })
        let catalog = ClusterCatalog(raft: raft, store: store, clock: { 0 }, authority: NodeAuthority(try NodeIdentity(dataDir: dir)))
        func create(_ name: String) async -> S3Error? {
            do { try await catalog.createBucket(name, scheme: nil, owner: "admin"); return nil } catch { return error as? S3Error }
        }
        async let waiting = withTaskGroup(of: S3Error?.self) { group in
            for i in 0..<3 { group.addTask { await create("waiting-\(i)") } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        while (try? await raft.loop.submit { raft.changePromises.count }.get()) ?? 0 < 3 { await Task.yield() }
        let refused = await create("one-too-many")
        #expect(refused?.status == 503 && refused?.code == "SlowDown", "\(String(describing: refused))")
        try await raft.loop.submit { raft.onTick() }.get()
        #expect(await waiting.map { $0?.code } == Array(repeating: "ServiceUnavailable", count: 3))
    }
}
