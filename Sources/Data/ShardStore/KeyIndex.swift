import Coordinator
import Determinism
import Glibc
import SQLite

/// The sorted local index of a shard store, kept in SQLite (`index.sqlite` in the store): the
/// newest version of each key the node holds, with its metadata, in S3's byte order (keys are
/// BLOBs), so that listings and the repairer read ranges and start-up reads no key directory.
///
/// The key directories stay the truth: a commit or revert first counts the key as `pending`,
/// then changes the files, then writes the key's entry and takes the count back in one
/// transaction. Start-up re-reads only the keys still pending (the process stopped between the
/// steps). A store whose index is not `trusted` (new, from before the index, damaged, or the
/// machine crashed since) is scanned once, the index written in batches and marked `built`.
final class KeyIndex {
    static let format: Int64 = 1
    let db: SQLiteDatabase

    init(path: String) throws(SQLiteError) {
        db = try SQLiteDatabase(path: path)
        try db.execute(
            """
            CREATE TABLE IF NOT EXISTS info(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS entries(bucket BLOB NOT NULL, key BLOB NOT NULL, time INTEGER NOT NULL, writer INTEGER NOT NULL,
                deleted INTEGER NOT NULL, meta BLOB NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS pending(bucket BLOB NOT NULL, key BLOB NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (bucket, key))
                WITHOUT ROWID;
            """)
    }

    /// Whether the index can be trusted as it is: a scan of the whole store was written, in
    /// this format, and nothing it was told since can have been lost. Its log is synced by
    /// SQLite's checkpoints only, which a killed process never loses but an OS crash may: so it
    /// is trusted when the machine has not restarted since the index was last opened (`boot`,
    /// the kernel's boot id), or when the store was closed cleanly (`close`) before it restarted.
    func trusted(boot: Int64) throws(SQLiteError) -> Bool {
        var info: [String: Int64] = [:]
        try db.query("SELECT name, value FROM info") { row in
            if let name = String(validating: row.blob(0), as: UTF8.self) { info[name] = row.int(1) }
            return true
        }
        guard info["built"] == Self.format, let last = info["boot"] else { return false }
        return last == boot || info["clean"] == last
    }

    /// Records that the store is open in this boot, and no longer closed cleanly (synced, as
    /// every later change depends on it).
    func opened(boot: Int64) throws(SQLiteError) {
        try synced { () throws(SQLiteError) in
            try db.run("INSERT OR REPLACE INTO info VALUES ('boot', ?)", [.int(boot)])
            try db.run("DELETE FROM info WHERE name = 'clean'")
        }
    }

    /// Marks a clean close (synced): every change so far is on disk, whatever the OS does next.
    func close() throws(SQLiteError) {
        try synced { () throws(SQLiteError) in try db.run("INSERT OR REPLACE INTO info SELECT 'clean', value FROM info WHERE name = 'boot'") }
    }

    func synced(_ body: () throws(SQLiteError) -> Void) throws(SQLiteError) {
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        try db.transaction(body)
    }

    /// This boot of the machine: the first 16 hex digits of the kernel's boot id (0 where the
    /// system has none, which trusts the index always).
    static func bootID() -> Int64 {
        let fd = Glibc.open("/proc/sys/kernel/random/boot_id", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let hex = buf[..<n].filter { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }.prefix(16)
        return Int64(bitPattern: UInt64(String(decoding: hex, as: UTF8.self), radix: 16) ?? 0)
    }

    /// Empties the index before a scan.
    func clear() throws(SQLiteError) {
        try db.execute("DELETE FROM info; DELETE FROM entries; DELETE FROM pending")
    }

    func markBuilt() throws(SQLiteError) {
        try db.run("INSERT OR REPLACE INTO info VALUES ('built', ?)", [.int(Self.format)])
    }

    /// Counts an operation on a key under way (before its files change).
    func markPending(_ bucket: String, _ key: String) throws(SQLiteError) {
        try db.run(
            "INSERT INTO pending VALUES (?1, ?2, 1) ON CONFLICT (bucket, key) DO UPDATE SET n = n + 1",
            [.blob(Array(bucket.utf8)), .blob(Array(key.utf8))])
    }

    /// Keys with an operation that started and may not have reached the index.
    func pending() throws(SQLiteError) -> [(bucket: String, key: String)] {
        var out: [(bucket: String, key: String)] = []
        try db.query("SELECT bucket, key FROM pending") { row in
            if let b = String(validating: row.blob(0), as: UTF8.self), let k = String(validating: row.blob(1), as: UTF8.self) { out.append((b, k)) }
            return true
        }
        return out
    }

    /// Writes a key's newest version as read from its directory (nil: the node holds none),
    /// settling the pending operations on it that this accounts for.
    func set(_ bucket: String, _ key: String, _ entry: ListEntry?, settling: Settle) throws(SQLiteError) {
        let b = SQLiteValue.blob(Array(bucket.utf8)), k = SQLiteValue.blob(Array(key.utf8))
        if let e = entry {
            try db.run(
                "INSERT OR REPLACE INTO entries VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                [b, k, .int(Int64(bitPattern: e.version.time.raw)), .int(Int64(bitPattern: e.version.writer)), .int(e.deleted ? 1 : 0), .blob(e.meta)])
        } else {
            try db.run("DELETE FROM entries WHERE bucket = ?1 AND key = ?2", [b, k])
        }
        switch settling {
        case .none: break
        case .one:
            try db.run("UPDATE pending SET n = n - 1 WHERE bucket = ?1 AND key = ?2", [b, k])
            try db.run("DELETE FROM pending WHERE bucket = ?1 AND key = ?2 AND n <= 0", [b, k])
        case .all: try db.run("DELETE FROM pending WHERE bucket = ?1 AND key = ?2", [b, k])
        }
    }

    /// None (a scan), the one operation that just finished, or all (start-up's replay).
    enum Settle { case none, one, all }

    /// Newest versions of `bucket`'s keys after `after` starting with `prefix`, in byte order,
    /// within `limit` entries and about `maxBytes`; `truncated` when more may follow.
    func list(bucket: String, prefix: [UInt8], after: [UInt8], limit: Int, maxBytes: Int) throws(SQLiteError) -> (entries: [ListEntry], truncated: Bool) {
        let limit = max(0, min(limit, 1 << 20))
        let from = after.lexicographicallyPrecedes(prefix) ? prefix : after
        var out: [ListEntry] = [], bytes = 0, truncated = false
        // One row more than asked shows whether more follow; one more again for `after` itself.
        try db.query(
            "SELECT key, time, writer, deleted, meta FROM entries WHERE bucket = ?1 AND key >= ?2 ORDER BY key LIMIT ?3",
            [.blob(Array(bucket.utf8)), .blob(from), .int(Int64(limit) + 2)]
        ) { row in
            let k = row.blob(0)
            if k == after { return true }
            guard k.starts(with: prefix) else { return false }
            let meta = row.blob(4)
            if out.count == limit || (!out.isEmpty && bytes + k.count + meta.count > maxBytes) {
                truncated = true
                return false
            }
            guard let key = String(validating: k, as: UTF8.self) else { return true }
            let version = ObjectVersion(time: HybridClock.Timestamp(raw: UInt64(bitPattern: row.int(1))), writer: UInt64(bitPattern: row.int(2)))
            out.append(ListEntry(key: key, version: version, deleted: row.int(3) != 0, meta: meta))
            bytes += k.count + meta.count + 32
            return true
        }
        return (out, truncated)
    }

    /// Keys after `after` (bucket, then key, both in byte order), at most `limit`.
    func keys(after: (bucket: String, key: String)?, limit: Int) throws(SQLiteError) -> [(bucket: String, key: String)] {
        var out: [(bucket: String, key: String)] = []
        // Every bucket name is longer than the empty BLOB, so `nil` starts before the first.
        let (b, k) = after.map { (Array($0.bucket.utf8), Array($0.key.utf8)) } ?? ([], [])
        try db.query(
            "SELECT bucket, key FROM entries WHERE (bucket, key) > (?1, ?2) ORDER BY bucket, key LIMIT ?3",
            [.blob(b), .blob(k), .int(Int64(max(0, min(limit, 1 << 20))))]
        ) { row in
            if let bucket = String(validating: row.blob(0), as: UTF8.self), let key = String(validating: row.blob(1), as: UTF8.self) {
                out.append((bucket, key))
            }
            return true
        }
        return out
    }
}
