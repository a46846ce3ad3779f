import ChunkStore
import Coordinator
import Determinism
import Files
import Glibc
import SQLite
import Security
import Synchronization

/// The shards of object versions this node holds, one stripe file per (version, shard), as the
/// write coordinator's effects want them: `create` writes into `tmp/`, `commit` renames into
/// place (visible to reads), `abort` drops the temporary file, `revert` the committed one.
/// Paths come from hashes, never from object names:
///
///     shards/<2 hex>/<32 hex of SHA-256(bucket 0 key)>/<time 16 hex>-<writer 16 hex>.<shard>.<k>.<m>[d]
///     shards/<2 hex>/<32 hex>/name        bucket 0 key, for the index at start-up
///
/// (k and m: the version's scheme; a trailing `d` marks a delete marker). A commit keeps the newest `keptVersions` of a key
/// (a write in flight must not hide the version before it from reads). The newest version of
/// each key, with its metadata, is in a sorted index on disk (`KeyIndex`, SQLite) for listings
/// and the repairer; start-up reads only what a crash left pending. Blocking file I/O: callers
/// keep it off event loops.
public final class ShardStore: Sendable {
    public let root: String
    public static let keptVersions = 3
    let index: Mutex<KeyIndex>

    /// Opens (or makes) the store. Temporary files left by a previous run are removed: a write in
    /// progress when the process stopped was never committed, and its coordinator saw it fail.
    /// The index is opened and brought up to date (see `KeyIndex`); one that cannot be opened
    /// is moved aside (`index.sqlite.damaged`) and rebuilt from the directories.
    public convenience init(root: String) throws(FileError) { try self.init(root: root, boot: KeyIndex.bootID()) }

    init(root: String, boot: Int64) throws(FileError) {
        self.root = root
        try Files.makeDirectory(root)
        try Files.makeDirectory("\(root)/tmp")
        try Files.makeDirectory("\(root)/shards")
        for name in try Files.list("\(root)/tmp") { try Files.remove("\(root)/tmp/\(name)") }
        let path = "\(root)/index.sqlite"
        var opened: KeyIndex?, trusted = false
        do {
            opened = try KeyIndex(path: path)
            trusted = try opened!.trusted(boot: boot)
        } catch {
            opened = nil
            for suffix in ["", "-wal", "-shm"] where Files.exists(path + suffix) { try Files.move(path + suffix, to: "\(path).damaged\(suffix)") }
            do { opened = try KeyIndex(path: path) } catch { throw Self.indexError(error) }
        }
        index = Mutex(opened!)
        do throws(SQLiteError) {
            try index.withLock { i throws(SQLiteError) in
                if trusted {
                    for (bucket, key) in try i.pending() { try i.set(bucket, key, entry(bucket, key), settling: .all) }
                } else {
                    try i.clear()
                    try scan(into: i)
                    try i.markBuilt()
                }
                try i.opened(boot: boot)
            }
        } catch {
            throw Self.indexError(error)
        }
    }

    /// Marks the index closed cleanly, so that a restart of the machine does not rebuild it.
    /// Changes after this are kept, but without the mark again.
    public func close() { index.withLock { i in try? i.close() } }

    static func indexError(_ e: SQLiteError) -> FileError { .io(operation: "index (\(e.message))", path: e.path, errno: EIO) }

    /// Every key directory's newest version into `index`, a thousand keys per transaction.
    func scan(into index: KeyIndex) throws(SQLiteError) {
        var batch: [(String, String, ListEntry?)] = []
        func flush() throws(SQLiteError) {
            try index.db.transaction { () throws(SQLiteError) in for (b, k, e) in batch { try index.set(b, k, e, settling: .none) } }
            batch.removeAll(keepingCapacity: true)
        }
        for fan in (try? Files.list("\(root)/shards")) ?? [] {
            for h in (try? Files.list("\(root)/shards/\(fan)")) ?? [] {
                let dir = "\(root)/shards/\(fan)/\(h)"
                guard let name = try? Files.read("\(dir)/name", limit: 2048), let zero = name.firstIndex(of: 0),
                    let bucket = String(validating: name[..<zero], as: UTF8.self),
                    let key = String(validating: name[(zero + 1)...], as: UTF8.self)
                else { continue }
                batch.append((bucket, key, entry(bucket, key)))
                if batch.count == 1000 { try flush() }
            }
        }
        try flush()
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
        "\(Self.hex16(id.version.time.raw))-\(Self.hex16(id.version.writer)).\(id.shard).\(id.k).\(id.m)\(id.deleted ? "d" : "")"
    }

    public func path(_ id: ShardRef) -> String { paths(id).final }

    /// A new temporary shard file; `finish` it before `commit`.
    public func create(_ id: ShardRef) throws(FileError) -> StripeFileWriter {
        try StripeFileWriter(path: paths(id).temp)
    }

    /// Makes a finished temporary shard visible. Idempotent: committing again finds it in place.
    public func commit(_ id: ShardRef) throws(FileError) { try commit(id, as: id.version) }

    /// Makes the finished temporary shard `id` names visible under `version` (the write's
    /// version is fixed at its commit). Idempotent: committing again finds it in place.
    public func commit(_ written: ShardRef, as version: ObjectVersion) throws(FileError) {
        var id = written
        id.version = version
        var p = paths(id)
        p.temp = paths(written).temp
        if !Files.exists(p.temp) && Files.exists(p.final) { return }
        try markPending(id)
        defer { refresh(id.bucket, id.key) }
        try Files.makeDirectory(String(p.directory.prefix(upTo: p.directory.lastIndex(of: "/")!)))
        try Files.makeDirectory(p.directory)
        try Files.move(p.temp, to: p.final)
        let nameFile = "\(p.directory)/name"
        if !Files.exists(nameFile) {
            // Two commits of one key may race here (they share the temporary name): one wins.
            do { try Files.writeAtomically(Array(id.bucket.utf8) + [0] + Array(id.key.utf8), to: nameFile) } catch {
                guard Files.exists(nameFile) else { throw error }
            }
        }
        for old in try held(bucket: id.bucket, key: id.key).dropFirst(Self.keptVersions) {
            try? Files.remove(
                "\(p.directory)/\(fileName(old.ref(id.bucket, id.key)))")
        }
    }

    public func abort(_ id: ShardRef) throws(FileError) { try Files.remove(paths(id).temp) }

    /// Drops a committed shard (a failed write undone, or an old version replaced).
    public func revert(_ id: ShardRef) throws(FileError) {
        let p = paths(id)
        try markPending(id)
        defer { refresh(id.bucket, id.key) }
        try Files.remove(p.final)
        try Files.syncDirectory(of: p.final)
        if try held(bucket: id.bucket, key: id.key).isEmpty {
            try? Files.remove("\(p.directory)/name")
            try? Files.removeDirectory(p.directory)
        }
    }

    func markPending(_ id: ShardRef) throws(FileError) {
        do throws(SQLiteError) { try index.withLock { i throws(SQLiteError) in try i.markPending(id.bucket, id.key) } } catch { throw Self.indexError(error) }
    }

    /// A key's newest version as its directory holds it, with its metadata (nil: none).
    func entry(_ bucket: String, _ key: String) -> ListEntry? {
        guard let newest = (try? held(bucket: bucket, key: key))?.first, let meta = try? open(newest.ref(bucket, key)).meta else { return nil }
        return ListEntry(key: key, version: newest.version, deleted: newest.deleted, meta: meta)
    }

    /// Re-reads a key's newest version into the index (or drops the key) as one operation on it
    /// finishes. If the index cannot be written the key stays pending, for the next start-up.
    func refresh(_ bucket: String, _ key: String) {
        let e = entry(bucket, key)
        index.withLock { i in _ = try? i.db.transaction { () throws(SQLiteError) in try i.set(bucket, key, e, settling: .one) } }
    }

    /// Keys this node holds, by bucket then key, after `after`: what the repairer walks.
    public func keys(after: (bucket: String, key: String)?, limit: Int) -> [(bucket: String, key: String)] {
        index.withLock { (try? $0.keys(after: after, limit: limit)) ?? [] }
    }

    /// Reads every record of every version this node holds of a key, checking each checksum:
    /// the committed shards that fail (bitrot, a torn file), and the bytes read.
    public func verify(bucket: String, key: String) -> (corrupt: [ShardRef], bytes: Int) {
        var corrupt: [ShardRef] = [], bytes = 0
        for h in (try? held(bucket: bucket, key: key)) ?? [] {
            let ref = h.ref(bucket, key)
            do {
                let r = try open(ref)
                for i in 0..<r.count { bytes += try r.record(i).bytes.count }
            } catch .corrupt {
                corrupt.append(ref)
            } catch {
                continue  // gone meanwhile (replaced), or unreadable now: the next pass sees it again
            }
        }
        return (corrupt, bytes)
    }

    /// Newest versions of keys after `after` starting with `prefix`, in byte order, within
    /// `limit` entries and about `maxBytes`; `truncated` when more may follow.
    public func list(bucket: String, prefix: String, after: String, limit: Int, maxBytes: Int) -> (entries: [ListEntry], truncated: Bool) {
        index.withLock { i in
            (try? i.list(bucket: bucket, prefix: Array(prefix.utf8), after: Array(after.utf8), limit: limit, maxBytes: maxBytes)) ?? ([], false)
        }
    }

    /// The committed versions of a key this node holds, newest first.
    public func held(bucket: String, key: String) throws(FileError) -> [Held] {
        let dir = directory(hash: keyHash(bucket, key))
        guard Files.exists(dir) else { return [] }
        return try Files.list(dir).compactMap(Self.parse).sorted { $0.version > $1.version }
    }

    /// The committed versions of a key this node holds with their files' sizes, newest first.
    public func files(bucket: String, key: String) -> [(held: Held, bytes: Int)] {
        ((try? held(bucket: bucket, key: key)) ?? []).map { h in
            (h, Files.size(path(h.ref(bucket, key))) ?? 0)
        }
    }

    /// `<time>-<writer>.<shard>[d]`; nil for anything else (never trusted beyond its shape).
    static func parse(_ name: String) -> Held? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        let ids = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard ids.count == 2, ids[0].count == 16, ids[1].count == 16, let t = UInt64(ids[0], radix: 16), let w = UInt64(ids[1], radix: 16) else {
            return nil
        }
        let deleted = parts[3].hasSuffix("d")
        let numbers = [parts[1], parts[2], deleted ? parts[3].dropLast() : parts[3]].map { $0.count <= 3 ? Int($0) : nil }
        guard let shard = numbers[0], let k = numbers[1], let m = numbers[2], [shard, k, m].allSatisfy((0..<256).contains) else { return nil }
        return Held(ObjectVersion(time: HybridClock.Timestamp(raw: t), writer: w), shard: shard, k: k, m: m, deleted: deleted)
    }

    public func open(_ id: ShardRef) throws(FileError) -> StripeFileReader { try StripeFileReader(path: paths(id).final) }
}
