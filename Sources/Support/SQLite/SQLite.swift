import CSQLite

/// The one door to SQLite (Debian's libsqlite3): a connection, statements prepared once and
/// kept, values bound by position, rows read by column. Not thread-safe by itself: its owner
/// serializes every use (a `Mutex` around it).
public final class SQLiteDatabase {
    let handle: OpaquePointer
    var statements: [String: OpaquePointer] = [:]

    /// Opens (or makes) the database at `path`, in write-ahead-log mode: a commit survives the
    /// process being killed at any instant; `synchronous=NORMAL` leaves the last commits to the
    /// page cache, so an OS crash may lose them (callers keep what they cannot rebuild elsewhere).
    public init(path: String) throws(SQLiteError) {
        var h: OpaquePointer?
        let rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let h else {
            let e = SQLiteError(code: rc, message: h.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory", path: path)
            sqlite3_close_v2(h)
            throw e
        }
        handle = h
        sqlite3_busy_timeout(h, 5000)  // another connection to the same file (a tool, a test) waits its turn
        do {
            try execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
        } catch {
            sqlite3_close_v2(h)
            throw error
        }
    }

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close_v2(handle)
    }

    func failure(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), path: String(cString: sqlite3_db_filename(handle, "main")))
    }

    /// Runs statements with no values and no rows wanted (schema, pragmas).
    public func execute(_ sql: String) throws(SQLiteError) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw failure(rc) }
    }

    /// Runs one statement with `values` bound to its `?`s, discarding rows.
    public func run(_ sql: String, _ values: [SQLiteValue] = []) throws(SQLiteError) {
        try query(sql, values) { _ in false }
    }

    /// Runs one statement with `values` bound, handing each row to `row` until it answers false.
    public func query(_ sql: String, _ values: [SQLiteValue] = [], row: (SQLiteRow) -> Bool) throws(SQLiteError) {
        let s = try prepared(sql)
        defer {
            sqlite3_reset(s)
            sqlite3_clear_bindings(s)
        }
        for (i, v) in values.enumerated() {
            let at = Int32(i + 1)
            let rc: Int32
            switch v {
            case .int(let n): rc = sqlite3_bind_int64(s, at, n)
            case .blob(let b):
                rc = b.isEmpty ? sqlite3_bind_zeroblob(s, at, 0) : b.withUnsafeBytes { sqlite3_bind_blob(s, at, $0.baseAddress, Int32($0.count), transient) }
            }
            guard rc == SQLITE_OK else { throw failure(rc) }
        }
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw failure(rc) }
            guard row(SQLiteRow(statement: s)) else { return }
        }
    }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws.
    public func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    func prepared(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let s = statements[sql] { return s }
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &s, nil)
        guard rc == SQLITE_OK, let s else { throw failure(rc) }
        statements[sql] = s
        return s
    }
}

/// SQLITE_TRANSIENT: SQLite copies bound bytes before the call returns.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A value bound to a statement: integers and byte strings (BLOBs compare as bytes, memcmp then
/// length, which is S3's key order).
public enum SQLiteValue {
    case int(Int64)
    case blob([UInt8])
}

/// The current row of a statement, valid inside the `query` callback only.
public struct SQLiteRow {
    let statement: OpaquePointer

    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    public func blob(_ column: Int32) -> [UInt8] {
        // The pointer first, then the length (SQLite's order for a BLOB column).
        guard let p = sqlite3_column_blob(statement, column) else { return [] }
        let n = Int(sqlite3_column_bytes(statement, column))
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

public struct SQLiteError: Error, CustomStringConvertible {
    public var code: Int32
    public var message: String
    public var path: String
    public var description: String { "sqlite \(path): \(message) (code \(code))" }
}
