import ChunkStore
import Coordinator
import Determinism
import Files
import Glibc

/// Figures for `stacks bench index`: a shard store of `keys` keys (one small shard each, with
/// metadata the size of a typical object's), then the start-up that reads the index, the scan
/// that rebuilds it (what every start-up cost before the index), and a listing of every key in
/// pages of 1,000. `dropCaches` empties the page cache before each start-up when it can (root),
/// so they read from disk as after a reboot.
public enum IndexBench {
    public struct Figures: Sendable {
        public var keys: Int
        public var commitsPerSecond: Double
        public var startSeconds: Double
        public var rebuildSeconds: Double
        public var listKeysPerSecond: Double
        public var indexBytes: Int
        public var cold: Bool
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Writes "3" to /proc/sys/vm/drop_caches after a sync; false when not allowed.
    static func dropPageCache() -> Bool {
        sync()
        let fd = Glibc.open("/proc/sys/vm/drop_caches", O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "3", 1) == 1
    }

    public static func run(root: String, keys: Int, dropCaches: Bool, progress: (String) -> Void) throws(FileError) -> Figures {
        var store: ShardStore? = try ShardStore(root: root)
        let meta = [UInt8](repeating: 0x6d, count: 200), header = [UInt8](repeating: 0, count: StripeFileFormat.stripeHeaderBytes)
        let t0 = now()
        for i in 0..<keys {
            let id = ShardRef(
                bucket: "bench", key: "dir\(i % 100)/object-\(i)", version: ObjectVersion(time: .init(ms: UInt64(1 + i), logical: 0), writer: 1),
                shard: 0, k: 4, m: 2)
            let w = try store!.create(id)
            try w.append(header: header, [1, 2, 3, 4])
            try w.finish(meta: meta)
            try store!.commit(id)
            if i % 10_000 == 9_999 { progress("wrote \(i + 1) keys") }
        }
        let commits = Double(keys) / (now() - t0)
        store = nil
        let cold = dropCaches && dropPageCache()
        var t = now()
        store = try ShardStore(root: root)
        let start = now() - t
        t = now()
        var listed = 0, after = ""
        while true {
            let page = store!.list(bucket: "bench", prefix: "", after: after, limit: 1000, maxBytes: 1 << 20)
            listed += page.entries.count
            guard page.truncated, let last = page.entries.last?.key else { break }
            after = last
        }
        guard listed == keys else { throw .corrupt("listed \(listed) of \(keys) keys") }
        let list = Double(listed) / (now() - t)
        store = nil
        let indexBytes = ["", "-wal"].compactMap { Files.size("\(root)/index.sqlite\($0)") }.reduce(0, +)
        for suffix in ["", "-wal", "-shm"] { try? Files.remove("\(root)/index.sqlite\(suffix)") }
        if cold { _ = dropPageCache() }
        t = now()
        store = try ShardStore(root: root)
        let rebuild = now() - t
        return Figures(
            keys: keys, commitsPerSecond: commits, startSeconds: start, rebuildSeconds: rebuild, listKeysPerSecond: list, indexBytes: indexBytes,
            cold: cold)
    }
}
