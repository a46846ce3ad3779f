import ChunkStore
import Coordinator
import Determinism
import Files
import Foundation
import Testing

@testable import ShardStore

@Suite struct ShardStoreTests {
    func tempRoot() -> String {
        let p = NSTemporaryDirectory() + "stacks-shardstore-\(UInt64.random(in: 0 ... .max))"
        return p
    }
    func version(_ t: UInt64, _ w: UInt64 = 1) -> ObjectVersion { ObjectVersion(time: .init(ms: t, logical: 0), writer: w) }
    let header = [UInt8](repeating: 7, count: StripeFileFormat.stripeHeaderBytes)

    func write(_ store: ShardStore, _ id: ShardRef, records: [[UInt8]], meta: [UInt8] = [1, 2, 3]) throws {
        let w = try store.create(id)
        for r in records { try w.append(header: header, r) }
        try w.finish(meta: meta)
    }

    /// create → commit makes a shard visible with its records intact; abort leaves nothing;
    /// revert removes a committed one; names never become paths.
    @Test func lifecycleFollowsTheCoordinatorsEffects() throws {
        let root = tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = try ShardStore(root: root)
        let weird = ["../../etc/passwd", "", "a/b/c", "ключ", String(repeating: "x", count: 1024)]
        for (i, key) in weird.enumerated() {
            let id = ShardRef(bucket: "bkt", key: key, version: version(UInt64(100 + i)), shard: 2, k: 4, m: 2)
            try write(store, id, records: [[1, 2, 3], [], Array(repeating: 9, count: 5000)])
            #expect(try store.held(bucket: "bkt", key: key).isEmpty, "not visible before commit")
            try store.commit(id)
            try store.commit(id)  // idempotent
            #expect(try store.held(bucket: "bkt", key: key) == [Held(id.version, shard: 2, k: 4, m: 2)])
            #expect(store.path(id).hasPrefix(root + "/shards/") && !store.path(id).contains(".."))
            let r = try store.open(id)
            #expect(r.meta == [1, 2, 3] && r.count == 3)
            #expect(try r.record(2).bytes == Array(repeating: 9, count: 5000) && r.record(1).bytes.isEmpty && r.record(0).header == header)
        }
        // Two versions and a delete marker, newest first; abort and revert.
        let a = ShardRef(bucket: "b2", key: "k", version: version(5), shard: 0, k: 4, m: 2)
        let b = ShardRef(bucket: "b2", key: "k", version: version(6), shard: 0, k: 4, m: 2)
        let d = ShardRef(bucket: "b2", key: "k", version: version(7), shard: 0, k: 4, m: 2, deleted: true)
        let failed = ShardRef(bucket: "b2", key: "k", version: version(8), shard: 0, k: 4, m: 2)
        for id in [a, b, d] { try write(store, id, records: [[1]]); try store.commit(id) }
        try write(store, failed, records: [[1]])
        try store.abort(failed)
        #expect(
            try store.held(bucket: "b2", key: "k") == [
                Held(d.version, shard: 0, k: 4, m: 2, deleted: true), Held(b.version, shard: 0, k: 4, m: 2), Held(a.version, shard: 0, k: 4, m: 2),
            ])
        for id in [a, b, d] { try store.revert(id) }
        #expect(try store.held(bucket: "b2", key: "k").isEmpty)
        #expect(try Files.list(root + "/tmp").isEmpty)
    }

    /// A restart drops temporary files (their writes never committed); a committed file cut
    /// short or with a flipped bit is refused when read, never served.
    @Test func restartsAndDamage() throws {
        let root = tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var store = try ShardStore(root: root)
        let torn = ShardRef(bucket: "b", key: "torn", version: version(1), shard: 1, k: 4, m: 2)
        let w = try store.create(torn)
        try w.append(header: header, [UInt8](repeating: 1, count: 100))
        store = try ShardStore(root: root)  // the process died mid-write
        #expect(try Files.list(root + "/tmp").isEmpty)
        #expect(throws: FileError.self) { try store.commit(torn) }

        let id = ShardRef(bucket: "b", key: "k", version: version(2), shard: 0, k: 4, m: 2)
        try write(store, id, records: [Array(repeating: 3, count: 4000), Array(repeating: 4, count: 4000)], meta: Array("meta".utf8))
        try store.commit(id)
        let good = try Files.read(store.path(id))
        var rng = SeededRandom(seed: 9)
        var refused = (atOpen: 0, records: 0, served: 0)
        for trial in 0..<200 {
            var bad = good
            if trial % 2 == 0 {
                bad[Int(rng.next() % UInt64(bad.count))] ^= UInt8(1 << (rng.next() % 8))
            } else {
                bad.removeLast(1 + Int(rng.next() % UInt64(bad.count - 1)))
            }
            try Files.writeAtomically(bad, to: store.path(id))
            // Either the file is refused at open, or every record read is exact or refused.
            guard let r = try? store.open(id) else {
                refused.atOpen += 1
                continue
            }
            #expect(r.meta == Array("meta".utf8), "trial \(trial)")
            for i in 0..<r.count {
                if let rec = try? r.record(i) {
                    refused.served += 1
                    #expect(rec.bytes == Array(repeating: UInt8(3 + i), count: 4000), "trial \(trial)")
                } else {
                    refused.records += 1
                }
            }
        }
        print("stripe-file damage: 200 trials, \(refused.atOpen) refused at open, \(refused.records) records refused, \(refused.served) served exact")
        #expect(refused.atOpen > 100 && refused.records > 10)
    }
}
