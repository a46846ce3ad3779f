import ChunkStore
import Coordinator
import Determinism
import Files
import Security

/// The shards of object versions this node holds, one stripe file per (version, shard), as the
/// write coordinator's effects want them: `create` writes into `tmp/`, `commit` renames into
/// place (visible to reads), `abort` drops the temporary file, `revert` the committed one.
/// Paths come from hashes, never from object names:
///
///     shards/<2 hex>/<32 hex of SHA-256(bucket 0 key)>/<time 16 hex>-<writer 16 hex>.<shard>[d]
///
/// (a trailing `d` marks a delete marker). Blocking file I/O: callers keep it off event loops.
public final class ShardStore: Sendable {
    public let root: String

    /// Opens (or makes) the store. Temporary files left by a previous run are removed: a write in
    /// progress when the process stopped was never committed, and its coordinator saw it fail.
    public init(root: String) throws(FileError) {
        self.root = root
        try Files.makeDirectory(root)
        try Files.makeDirectory("\(root)/tmp")
        try Files.makeDirectory("\(root)/shards")
        for name in try Files.list("\(root)/tmp") { try Files.remove("\(root)/tmp/\(name)") }
    }

    /// A shard's hashed key, computed once per operation, and the paths that follow from it.
    struct Paths {
        var directory: String
        var final: String
        var temp: String
    }

    func paths(_ id: ShardRef) -> Paths {
        let h = keyHash(id.bucket, id.key), dir = directory(hash: h), name = fileName(id)
        return Paths(directory: dir, final: "\(dir)/\(name)", temp: "\(root)/tmp/\(h)-\(name)")
    }

    func keyHash(_ bucket: String, _ key: String) -> String {
        Array(Digest.sha256(Array(bucket.utf8) + [0] + Array(key.utf8)).prefix(16)).hex
    }

    func directory(hash h: String) -> String { "\(root)/shards/\(h.prefix(2))/\(h)" }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    func fileName(_ id: ShardRef) -> String {
        "\(Self.hex16(id.version.time.raw))-\(Self.hex16(id.version.writer)).\(id.shard)\(id.deleted ? "d" : "")"
    }

    public func path(_ id: ShardRef) -> String { paths(id).final }

    /// A new temporary shard file; `finish` it before `commit`.
    public func create(_ id: ShardRef) throws(FileError) -> StripeFileWriter {
        try StripeFileWriter(path: paths(id).temp)
    }

    /// Makes a finished temporary shard visible. Idempotent: committing again finds it in place.
    public func commit(_ id: ShardRef) throws(FileError) {
        let p = paths(id)
        if !Files.exists(p.temp) && Files.exists(p.final) { return }
        try Files.makeDirectory(String(p.directory.prefix(upTo: p.directory.lastIndex(of: "/")!)))
        try Files.makeDirectory(p.directory)
        try Files.move(p.temp, to: p.final)
    }

    public func abort(_ id: ShardRef) throws(FileError) { try Files.remove(paths(id).temp) }

    /// Drops a committed shard (a failed write undone, or an old version replaced).
    public func revert(_ id: ShardRef) throws(FileError) {
        let p = paths(id)
        try Files.remove(p.final)
        try Files.syncDirectory(of: p.final)
        try? Files.removeDirectory(p.directory)  // only when empty
    }

    /// The committed versions of a key this node holds, newest first.
    public func held(bucket: String, key: String) throws(FileError) -> [Held] {
        let dir = directory(hash: keyHash(bucket, key))
        guard Files.exists(dir) else { return [] }
        return try Files.list(dir).compactMap(Self.parse).sorted { $0.version > $1.version }
    }

    /// `<time>-<writer>.<shard>[d]`; nil for anything else (never trusted beyond its shape).
    static func parse(_ name: String) -> Held? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let ids = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard ids.count == 2, ids[0].count == 16, ids[1].count == 16, let t = UInt64(ids[0], radix: 16), let w = UInt64(ids[1], radix: 16) else {
            return nil
        }
        let deleted = parts[1].hasSuffix("d")
        guard let shard = Int(deleted ? parts[1].dropLast() : parts[1]), (0..<256).contains(shard) else { return nil }
        return Held(ObjectVersion(time: HybridClock.Timestamp(raw: t), writer: w), shard: shard, deleted: deleted)
    }

    public func open(_ id: ShardRef) throws(FileError) -> StripeFileReader { try StripeFileReader(path: paths(id).final) }
}
