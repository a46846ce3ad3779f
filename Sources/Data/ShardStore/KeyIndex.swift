import Coordinator
import Determinism
import SQLite

/// The sorted local index of a shard store, kept in SQLite (`index.sqlite` in the store): the
/// newest version of each key the node holds, with its metadata, in S3's byte order (keys are
/// BLOBs), so that listings and the repairer read ranges and start-up reads no key directory.
///
/// The key directories stay the truth: a commit or revert first counts the key as `pending`
/// (synced), then changes the files, then writes the key's entry and takes the count back in one
/// transaction (left to SQLite's checkpoints). Start-up re-reads only the keys still pending (a
/// process or the OS stopped between the steps). A store without a finished index (new, from before the index, or the index damaged)
/// is scanned once, the index written in batches and marked `built`.
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

    /// True once a scan of the whole store has been written, in this format.
    var built: Bool {
        get throws(SQLiteError) {
            var format: Int64?
            try db.query("SELECT value FROM info WHERE name = 'built'") { row in
                format = row.int(0)
                return false
            }
            return format == Self.format
        }
    }

    /// Empties the index before a scan.
    func clear() throws(SQLiteError) {
        try db.execute("DELETE FROM info; DELETE FROM entries; DELETE FROM pending")
    }

    func markBuilt() throws(SQLiteError) {
        try db.run("INSERT OR REPLACE INTO info VALUES ('built', ?)", [.int(Self.format)])
    }

    /// Counts an operation on a key under way (before its files change), synced to disk as the
    /// files' changes are: an OS crash after them still finds the key pending.
    func markPending(_ bucket: String, _ key: String) throws(SQLiteError) {
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
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
