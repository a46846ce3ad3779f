import Coordinator
import DataRPC
import Determinism
import Files
import Foundation
import ShardStore
import Testing

@Suite struct ShardServerTests {
    func store() throws -> (ShardStore, String) {
        let root = NSTemporaryDirectory() + "stacks-shardserver-\(UInt64.random(in: 0 ... .max))"
        return (try ShardStore(root: root), root)
    }
    static let header = [UInt8](repeating: 1, count: 13)
    func ref(_ key: String = "k", _ t: UInt64 = 10) -> ShardRef {
        ShardRef(bucket: "bkt", key: key, version: ObjectVersion(time: .init(ms: t, logical: 0), writer: 7), shard: 3, k: 4, m: 2)
    }
    func frame(_ a: ShardServer.Answer) -> DataFrame? { if case .frame(let f) = a { return f } else { return nil } }
    func isNone(_ a: ShardServer.Answer) -> Bool { if case .none = a { return true } else { return false } }
    func isClose(_ a: ShardServer.Answer) -> Bool { if case .close = a { return true } else { return false } }

    /// A put is answered once, at its end; commit makes it visible; get streams its records;
    /// revert removes it; errors carry codes.
    @Test func putCommitGetRevert() throws {
        let (s, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ShardServer(backend: s)
        let r = ref()
        #expect(isNone(server.handle(.putShard(r))))
        for i in 0..<3 { #expect(isNone(server.handle(.stripe(header: Self.header, bytes: [UInt8](repeating: UInt8(i), count: 100))))) }
        #expect(frame(server.handle(.finish(meta: [9]))) == .prepared)
        #expect(frame(server.handle(.held(bucket: "bkt", key: "k"))) == .versions([]), "invisible before commit")
        #expect(frame(server.handle(.commit(r))) == .ok)
        #expect(frame(server.handle(.held(bucket: "bkt", key: "k"))) == .versions([Held(r.version, shard: 3, k: 4, m: 2)]))
        guard case .stream(let source, let range) = server.handle(.getShard(r, first: 1, count: 5)) else {
            Issue.record("no stream")
            return
        }
        let record = try source.record(2)
        #expect(source.meta == [9] && range == 1..<3 && record.bytes == [UInt8](repeating: 2, count: 100))
        #expect(frame(server.handle(.revert(r))) == .ok)
        guard case .error(let e) = frame(server.handle(.getShard(r, first: 0, count: 1))) else {
            Issue.record("a reverted shard was served")
            return
        }
        #expect(e.code == .notFound)
    }

    /// `heldHead` answers the versions, then the newest version's metadata, then its record
    /// when it is one stripe of a data shard within the size asked, then `end`.
    @Test func heldHeadSendsASmallDataShardAlong() throws {
        let (s, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ShardServer(backend: s)
        func put(_ r: ShardRef, stripes: Int, meta: [UInt8]) {
            _ = server.handle(.putShard(r))
            for i in 0..<stripes { _ = server.handle(.stripe(header: Self.header, bytes: [UInt8](repeating: UInt8(i), count: 100))) }
            #expect(frame(server.handle(.finish(meta: meta))) == .prepared)
            #expect(frame(server.handle(.commit(r))) == .ok)
        }
        func head(_ key: String, maxBytes: UInt32 = 1000) -> [DataFrame] {
            if case .frames(let fs) = server.handle(.heldHead(bucket: "bkt", key: key, maxBytes: maxBytes)) { return fs }
            return []
        }
        let data = ref("small"), parity = ShardRef(bucket: "bkt", key: "parity", version: data.version, shard: 4, k: 4, m: 2)
        let long = ref("long"), marker = ShardRef(bucket: "bkt", key: "gone", version: data.version, shard: 0, k: 4, m: 2, deleted: true)
        put(data, stripes: 1, meta: [1])
        put(parity, stripes: 1, meta: [2])
        put(long, stripes: 2, meta: [3])
        put(marker, stripes: 0, meta: [4])
        let record = DataFrame.stripe(header: Self.header, bytes: [UInt8](repeating: 0, count: 100))
        #expect(head("small") == [.versions([data.held]), .meta([1]), record, .end])
        #expect(head("small", maxBytes: 99) == [.versions([data.held]), .meta([1]), .end], "larger than asked")
        #expect(head("parity") == [.versions([parity.held]), .meta([2]), .end], "parity is read only when a data shard is missing")
        #expect(head("long") == [.versions([long.held]), .meta([3]), .end], "more than one stripe")
        #expect(head("gone") == [.versions([marker.held]), .end])
        #expect(head("none") == [.versions([]), .end])
    }

    /// A put that cannot be written (the same shard twice) drops its stripes and answers the
    /// error at its end, and the connection stays in step for the next request.
    @Test func aFailedPutStaysInStep() throws {
        let (s, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ShardServer(backend: s)
        _ = server.handle(.putShard(ref()))
        _ = server.handle(.finish(meta: []))
        _ = server.handle(.putShard(ref()))
        #expect(isNone(server.handle(.stripe(header: Self.header, bytes: [1]))))
        guard case .error(let e) = frame(server.handle(.finish(meta: []))) else {
            Issue.record("a second put of the same shard was accepted")
            return
        }
        #expect(e.code == .exists)
        #expect(frame(server.handle(.held(bucket: "bkt", key: "other"))) == .versions([]))
    }

    /// Frames out of place end the connection, and a shard being written is removed then, as
    /// it is when the connection drops. Random sequences never crash the server and leave no
    /// temporary file behind once the connection is gone.
    @Test func outOfPlaceFramesAndDropsLeaveNothing() throws {
        let (s, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(isClose(ShardServer(backend: s).handle(.stripe(header: Self.header, bytes: []))))
        #expect(isClose(ShardServer(backend: s).handle(.prepared)))
        let server = ShardServer(backend: s)
        _ = server.handle(.putShard(ref("mid")))
        _ = server.handle(.stripe(header: Self.header, bytes: [1, 2]))
        #expect(isClose(server.handle(.commit(ref("mid")))))
        #expect(try Files.list(root + "/tmp").isEmpty)
        #expect(isClose(server.handle(.held(bucket: "b", key: "k"))), "nothing after close")

        var rng = SeededRandom(seed: 5)
        let pool: [DataFrame] = [
            .putShard(ref("a")), .putShard(ref("b", 11)), .stripe(header: Self.header, bytes: [1, 2, 3]), .finish(meta: [1]), .end,
            .commit(ref("a")), .commitAs(ref("b", 11), ref("b", 12).version), .abort(ref("a")), .revert(ref("b", 11)), .held(bucket: "bkt", key: "a"),
            .getShard(ref("a"), first: 0, count: .max), .ok, .versions([]),
        ]
        var closes = 0
        // Finished puts wait in tmp/ for their commit or abort; nothing else may stay there.
        var waiting: Set<String> = []
        for _ in 0..<300 {
            let server = ShardServer(backend: s)
            var putting: String?
            for _ in 0..<(1 + Int(rng.next() % 12)) {
                let f = pool[Int(rng.next() % UInt64(pool.count))]
                let answer = server.handle(f)
                if isClose(answer) {
                    closes += 1
                    break
                }
                switch f {
                case .putShard(let r): putting = r.key
                case .finish: if frame(answer)?.isPrepared == true, let k = putting { waiting.insert(k) }; putting = nil
                case .commit(let r), .abort(let r), .commitAs(let r, _): if frame(answer) == .ok { waiting.remove(r.key) }
                default: break
                }
            }
            server.closed()
            #expect(try Files.list(root + "/tmp").count == waiting.count, "waiting: \(waiting)")
        }
        #expect(closes > 50)
    }
}
