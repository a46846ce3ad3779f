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

        // Written under one version, committed under a later one (fixed at the commit): visible
        // only under it; committing again is a no-op.
        let early = ShardRef(bucket: "b3", key: "k", version: version(20), shard: 1, k: 4, m: 2)
        var late = early
        late.version = version(30)
        try write(store, early, records: [[7]])
        try store.commit(early, as: late.version)
        try store.commit(early, as: late.version)
        #expect(try store.held(bucket: "b3", key: "k") == [Held(late.version, shard: 1, k: 4, m: 2)])
        #expect(try store.open(late).record(0).bytes == [7])
        try store.revert(late)
        #expect(try store.held(bucket: "b3", key: "k").isEmpty && Files.list(root + "/tmp").isEmpty)
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

    func keys(_ store: ShardStore, _ bucket: String, prefix: String = "", after: String = "", limit: Int = 1000, maxBytes: Int = .max) -> [String] {
        store.list(bucket: bucket, prefix: prefix, after: after, limit: limit, maxBytes: maxBytes).entries.map(\.key)
    }

    /// Listings page through keys in S3's byte order (canonically equivalent keys stay two
    /// keys), with the newest version's metadata; the repairer's walk sees every key once.
    @Test func theIndexListsInByteOrder() throws {
        let root = tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = try ShardStore(root: root)
        var rng = SeededRandom(seed: 5)
        let alphabet = ["a", "b", "/", "é", "e\u{301}", "~", "0"]
        var all = Set<String>()
        for _ in 0..<300 { all.insert((0..<(1 + Int(rng.next() % 4))).map { _ in alphabet[Int(rng.next() % 7)] }.joined()) }
        all.formUnion(["é", "e\u{301}"])  // equal as Swift strings, two keys to S3
        #expect(all.count == Set(all.map { Array($0.utf8) }).count)
        for (i, key) in all.enumerated() {
            let id = ShardRef(bucket: "b", key: key, version: version(UInt64(10 + i)), shard: 0, k: 4, m: 2)
            try write(store, id, records: [[1]], meta: Array(key.utf8))
            try store.commit(id)
        }
        let other = ShardRef(bucket: "c", key: "a", version: version(1), shard: 0, k: 4, m: 2)
        try write(store, other, records: [[1]])
        try store.commit(other)
        let sorted = all.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let listed = store.list(bucket: "b", prefix: "", after: "", limit: 10_000, maxBytes: .max)
        #expect(listed.entries.map(\.key) == sorted && !listed.truncated)
        #expect(listed.entries.allSatisfy { $0.meta == Array($0.key.utf8) })
        // Pages of 7 after each page's last key, and prefixes, as S3 pages.
        var paged: [String] = [], after = ""
        while true {
            let page = store.list(bucket: "b", prefix: "", after: after, limit: 7, maxBytes: .max)
            paged += page.entries.map(\.key)
            guard page.truncated, let last = page.entries.last?.key else { break }
            after = last
        }
        #expect(paged == sorted)
        for prefix in ["a", "é", "e\u{301}", "b/", "zz"] {
            let under = sorted.filter { Array($0.utf8).starts(with: Array(prefix.utf8)) }
            #expect(keys(store, "b", prefix: prefix) == under, "prefix \(prefix)")
            #expect(keys(store, "b", prefix: prefix, after: "a") == under.filter { Array("a".utf8).lexicographicallyPrecedes(Array($0.utf8)) })
        }
        #expect(store.list(bucket: "b", prefix: "", after: "", limit: 0, maxBytes: .max) == ([], true))
        #expect(store.list(bucket: "b", prefix: "", after: "", limit: 100, maxBytes: 1).entries.count == 1, "one entry always fits")
        #expect(keys(store, "none").isEmpty)
        var walked: [String] = [], cursor: (bucket: String, key: String)?
        while case let batch = store.keys(after: cursor, limit: 64), let last = batch.last {
            walked += batch.map { "\($0.bucket) \($0.key)" }
            cursor = last
        }
        #expect(walked == sorted.map { "b \($0)" } + ["c a"])
    }

    /// The index outlives the process: a restart lists every key without reading the key
    /// directories; a key whose files changed just before the process died (the index not yet
    /// written) is read again; an index that is damaged or missing, or not closed before the
    /// machine restarted, is rebuilt from the directories.
    @Test func theIndexSurvivesRestartsCrashesAndDamage() throws {
        let root = tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var store: ShardStore? = try ShardStore(root: root)
        var want: [String] = []
        for i in 0..<50 {
            let id = ShardRef(bucket: "b", key: "k\(i)", version: version(UInt64(100 + i)), shard: 1, k: 4, m: 2)
            try write(store!, id, records: [[1]])
            try store!.commit(id)
            want.append("k\(i)")
        }
        want.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        // Killed between the files and the index: a committed shard the index has not seen, and
        // a revert the index has not seen.
        let late = ShardRef(bucket: "b", key: "late", version: version(900), shard: 1, k: 4, m: 2)
        try write(store!, late, records: [[1]])
        try store!.markPending(late)
        let dir = store!.paths(late).directory
        try Files.makeDirectory(String(dir[..<dir.lastIndex(of: "/")!]))
        try Files.makeDirectory(dir)
        try Files.move(store!.paths(late).temp, to: store!.path(late))
        try Files.writeAtomically(Array("b".utf8) + [0] + Array("late".utf8), to: dir + "/name")
        let gone = ShardRef(bucket: "b", key: "k7", version: version(107), shard: 1, k: 4, m: 2)
        try store!.markPending(gone)
        // Another operation on the key starts and ends meanwhile: the one in flight stays pending.
        let other = ShardRef(bucket: "b", key: "k7", version: version(99), shard: 2, k: 4, m: 2)
        try write(store!, other, records: [[2]])
        try store!.commit(other)
        try store!.revert(other)
        try Files.remove(store!.path(gone))
        #expect(!keys(store!, "b").contains("late") && keys(store!, "b").contains("k7"), "the index has not seen either yet")
        store = nil
        let after = want.filter { $0 != "k7" } + ["late"]
        store = try ShardStore(root: root)
        #expect(keys(store!, "b") == after.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        // Start-up reads no directory: a key's name file gone unnoticed leaves it listed.
        let k3 = ShardRef(bucket: "b", key: "k3", version: version(103), shard: 1, k: 4, m: 2)
        try Files.remove(store!.paths(k3).directory + "/name")
        store = nil
        store = try ShardStore(root: root)
        #expect(keys(store!, "b").contains("k3"))
        // Closed cleanly, then the machine restarted: trusted as it is.
        store!.close()
        store = nil
        store = try ShardStore(root: root, boot: 1)
        #expect(keys(store!, "b").contains("k3"))
        // Not closed, and the machine restarted (an OS crash may have lost the log's tail): rebuilt
        // from the directories, where k3 has no name now.
        store = nil
        store = try ShardStore(root: root, boot: 2)
        let rebuilt = after.filter { $0 != "k3" }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(keys(store!, "b") == rebuilt)
        // Damaged: set aside and rebuilt.
        store = nil
        try Files.writeAtomically(Array(repeating: 0x5a, count: 8192), to: root + "/index.sqlite")
        try? Files.remove(root + "/index.sqlite-wal")
        store = try ShardStore(root: root, boot: 2)
        #expect(keys(store!, "b") == rebuilt)
        #expect(Files.exists(root + "/index.sqlite.damaged"))
        // Missing (a store from before the index): built by one scan.
        store = nil
        for suffix in ["", "-wal", "-shm"] { try? Files.remove(root + "/index.sqlite" + suffix) }
        store = try ShardStore(root: root, boot: 2)
        #expect(keys(store!, "b") == rebuilt)
    }
}
