import Checksum
import Files
import Raft
import Support

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Failures of the durable Raft log, naming the segment and offset.
public enum RaftLogError: Error, CustomStringConvertible, Equatable {
    case corrupt(segment: String, offset: Int, why: String)
    case io(String)

    public var description: String {
        switch self {
        case .corrupt(let s, let o, let why):
            "Raft log corrupt in \(s) at byte \(o): \(why); refusing to serve it (to restore this node from its peers, move its raft directory aside and restart it with seeds)"
        case .io(let what): "Raft log I/O: \(what)"
        }
    }
}

/// The write-ahead log under a Raft node: segments of checksummed records, one fsync per `save`.
///
///     record  length:u32 crc32c:u32 kind:u8 payload     (crc covers kind and payload)
///     kinds   1 entry (term:u64 index:u64 entryKind:u8 data) · 2 truncate-after (index:u64) · 3 hard state (term:u64 commit:u64 vote)
///             4 batch end ("STKSBEND" seq:u64): closes the records of one fsynced `save`
///
/// Segments are `wal-<16 hex digits>.log`, numbered in order, preallocated to `segmentBytes`
/// (zeros after the last record); a new one starts when a save would not fit.
/// On open, records replay in order. Damage in the last segment is a torn tail when it lies in
/// the last batch: the records after the last intact batch end, which were never acknowledged
/// (`save` returns only after fdatasync) and whose pages may have reached the disk in any order,
/// so intact records of that batch may follow the damage. It is cut off there. Damage followed by
/// a later batch (a second batch end, one numbered two past the last before the damage, or any
/// record after a batch end) is in data that was fsynced: that, and damage in any other segment,
/// stops the node with `.corrupt`. (An entry's payload could imitate a batch end only if written
/// by someone holding the admin token; the worst it does is turn a torn tail into `.corrupt`.)
/// A snapshot lives beside the segments; saving one rewrites what follows it into a new segment
/// and deletes the old ones, so the log on disk stays bounded.
public final class RaftLog {
    public let directory: String
    public let segmentBytes: Int
    public private(set) var hardState = HardState()
    /// The latest snapshot (`snapshot` file: crc32c · index · term · voters · learners · data).
    public private(set) var snapshot: Snapshot?
    /// Entries after the snapshot.
    public private(set) var entries: [Entry] = []
    var offset: UInt64 { snapshot?.index.value ?? 0 }
    private var fd: Int32 = -1
    private var segment = 0
    private var segmentSize = 0
    /// fsyncs done, for tests and metrics (group commit: one per `save`).
    public private(set) var syncs = 0
    /// Told each fdatasync's duration in nanoseconds (the shell's latency histogram).
    public var onSync: ((Int64) -> Void)?
    /// The number of the last batch end written or replayed (nil: none seen since open).
    private var lastBatch: UInt64?
    /// Records written to the open segment since its last fsync.
    private var unsynced = false
    static let batchMagic = Array("STKSBEND".utf8)

    static let zeroPage = [UInt8](repeating: 0, count: 1 << 16)

    public init(directory: String, segmentBytes: Int = 16 << 20) throws {
        self.directory = directory
        self.segmentBytes = segmentBytes
        do { try Files.makeDirectory(directory) } catch { throw RaftLogError.io("\(error)") }
        snapshot = try Self.loadSnapshot("\(directory)/snapshot")
        let names = try Files.list(directory).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }.sorted()
        var end = 0
        for (i, name) in names.enumerated() {
            end = try replay(name, isLast: i == names.count - 1)
        }
        segment = names.last.flatMap { Int($0.dropFirst(4).dropLast(4), radix: 16) } ?? 0
        try openSegment(segment, truncate: names.isEmpty, end: end)
    }

    deinit { if fd >= 0 { close(fd) } }

    static func name(_ n: Int) -> String {
        let hex = String(n, radix: 16)
        return "wal-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".log"
    }

    /// Makes a Ready's durable part durable: truncation, entries, hard state, a batch end; then
    /// one fsync. `sync` forces it even when only the commit index moved.
    public func save(_ r: Ready, sync: Bool = false) throws {
        var records: [UInt8] = []
        if let t = r.truncateAfter {
            var w = BinaryWriter(); w.u64(t.value)
            records += Self.record(kind: 2, w.bytes)
            try apply(truncateAfter: t)
        }
        for e in r.entries {
            var w = BinaryWriter(); w.u64(e.term.value); w.u64(e.index.value); w.u8(e.kind.rawValue); w.blob(e.data)
            records += Self.record(kind: 1, w.bytes)
            try apply(e)
        }
        // Entries, truncations, term and vote must be on disk before anything depending on them
        // is sent; a commit index that only moved forward need not (etcd's MustSync): after a
        // crash it is learned again from the leader. It is written and rides on the next fsync.
        var mustSync = sync || !records.isEmpty
        if let hs = r.hardState {
            var w = BinaryWriter(); w.u64(hs.term.value); w.u64(hs.commit.value); w.string(hs.vote ?? "")
            records += Self.record(kind: 3, w.bytes)
            if hs.term != hardState.term || hs.vote != hardState.vote || hs.commit < hardState.commit { mustSync = true }
            hardState = hs
        }
        guard !records.isEmpty else { return }
        if mustSync {
            let seq = (lastBatch ?? 0) + 1
            var w = BinaryWriter(); Self.batchMagic.forEach { w.u8($0) }; w.u64(seq)
            records += Self.record(kind: 4, w.bytes)
            lastBatch = seq
        }
        if segmentSize > 0 && segmentSize + records.count > segmentBytes {
            // Replay allows a torn tail only in the last segment: what this one holds unsynced
            // (commit-only records) must be on disk before records go to the next.
            try closeSegment()
            segment += 1
            try openSegment(segment, truncate: true)
        }
        try write(records)
        unsynced = !mustSync
        guard mustSync else { return }
        try syncSegment()
    }

    private func syncSegment() throws {
        let started = Self.monotonicNanoseconds()
        guard fdatasync(fd) == 0 else { throw RaftLogError.io("fdatasync \(Self.name(segment)): errno \(errno)") }
        onSync?(Self.monotonicNanoseconds() - started)
        syncs += 1
        unsynced = false
    }

    static func monotonicNanoseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    private func closeSegment() throws {
        if unsynced { try syncSegment() }
        close(fd)
    }

    static func record(kind: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let body = [kind] + payload
        var w = BinaryWriter()
        w.u32(UInt32(body.count))
        w.u32(Checksum.crc32c(body))
        return w.bytes + body
    }

    /// Replays one entry record: it overwrites from its index on, and must follow the entries
    /// before it (a gap would shift every later position).
    private func apply(_ e: Entry) throws(FileError) {
        guard e.index.value > offset else { return }  // folded into the snapshot
        guard e.index < LogIndex.limit, e.index.value - offset - 1 <= UInt64(entries.count) else {
            throw .corrupt("entry \(e.index) does not follow entry \(offset + UInt64(entries.count))")
        }
        let i = Int(e.index.value - offset) - 1
        if i < entries.count { entries.removeSubrange(i...) }
        entries.append(e)
    }

    private func apply(truncateAfter t: LogIndex) throws(FileError) {
        guard t < LogIndex.limit else { throw .corrupt("truncation at \(t) out of range") }
        guard t.value >= offset else { return }
        let keep = Int(t.value - offset)
        if keep < entries.count { entries.removeSubrange(keep...) }
    }

    /// Persists a snapshot (from `RaftNode.compact` or a Ready's InstallSnapshot), then starts a
    /// fresh segment holding only what follows it and deletes the older segments.
    public func saveSnapshot(_ s: Snapshot) throws {
        do { try Files.writeAtomically(Self.snapshotFile(s), to: "\(directory)/snapshot") } catch { throw RaftLogError.io("\(error)") }
        try adopt(s)
    }

    /// Writes `s` to `snapshot.pending` (atomically, fsynced). It touches no file the log is
    /// using, so it may run on another thread while the log keeps appending; then
    /// `adoptPending(s)` on the log's thread makes it the snapshot.
    public static func writePending(_ s: Snapshot, directory: String) throws {
        do { try Files.writeAtomically(snapshotFile(s), to: "\(directory)/snapshot.pending") } catch { throw RaftLogError.io("\(error)") }
    }

    public func adoptPending(_ s: Snapshot) throws {
        guard rename("\(directory)/snapshot.pending", "\(directory)/snapshot") == 0 else { throw RaftLogError.io("rename snapshot.pending: errno \(errno)") }
        do { try Files.syncDirectory(of: "\(directory)/snapshot") } catch { throw RaftLogError.io("\(error)") }
        try adopt(s)
    }

    /// crc32c · index · term · voters · learners · data
    static func snapshotFile(_ s: Snapshot) -> [UInt8] {
        var w = BinaryWriter()
        w.u64(s.index.value); w.u64(s.term.value)
        w.u32(UInt32(s.voters.count)); for v in s.voters.sorted() { w.string(v) }
        w.u32(UInt32(s.learners.count)); for l in s.learners.sorted() { w.string(l) }
        w.blob(s.data)
        var file = BinaryWriter()
        file.u32(Checksum.crc32c(w.bytes))
        return file.bytes + w.bytes
    }

    /// The snapshot file holds `s` now: keep only the entries after it, in a fresh segment.
    private func adopt(_ s: Snapshot) throws {
        let kept = entries.filter { $0.index > s.index }
        snapshot = s
        entries = []
        let old = try Files.list(directory).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }
        try closeSegment()  // a crash before the old segments go replays them
        segment += 1
        try openSegment(segment, truncate: true)
        var r = Ready()
        r.entries = kept
        r.hardState = hardState
        try save(r, sync: true)  // term and vote must be durable here before the old segments go
        for name in old { try? Files.remove("\(directory)/\(name)") }
    }

    static func loadSnapshot(_ path: String) throws -> Snapshot? {
        guard Files.exists(path) else { return nil }
        do {
            let bytes = try Files.read(path, limit: 1 << 34)
            var h = BinaryReader(Array(bytes.prefix(4)))
            let body = Array(bytes.dropFirst(4))
            guard bytes.count >= 4, try h.u32() == Checksum.crc32c(body) else {
                throw RaftLogError.corrupt(segment: "snapshot", offset: 0, why: "checksum mismatch")
            }
            var r = BinaryReader(body)
            let index = LogIndex(try r.u64()), term = Term(try r.u64())
            guard index < LogIndex.limit, term < Term.limit else {
                throw RaftLogError.corrupt(segment: "snapshot", offset: 0, why: "index or term out of range")
            }
            var voters = Set<String>(), learners = Set<String>()
            for _ in 0..<(try r.u32()) { voters.insert(try r.string()) }
            for _ in 0..<(try r.u32()) { learners.insert(try r.string()) }
            let data = try r.blob(max: 1 << 34)
            try r.expectEnd()
            return Snapshot(index: index, term: term, voters: voters, learners: learners, data: data)
        } catch let e as RaftLogError {
            throw e
        } catch {
            throw RaftLogError.corrupt(segment: "snapshot", offset: 0, why: "\(error)")
        }
    }

    /// Replays one segment; returns where its records end (the rest is preallocated zeros).
    @discardableResult
    private func replay(_ name: String, isLast: Bool) throws -> Int {
        let path = "\(directory)/\(name)"
        let bytes: [UInt8]
        do { bytes = try Files.read(path, limit: 1 << 34) } catch { throw RaftLogError.io("\(error)") }
        func zeros(from i: Int) -> Bool {
            guard i < bytes.count else { return true }
            return bytes.withUnsafeBytes { raw in
                var at = i
                while at < raw.count {
                    let n = min(Self.zeroPage.count, raw.count - at)
                    if memcmp(raw.baseAddress! + at, Self.zeroPage, n) != 0 { return false }
                    at += n
                }
                return true
            }
        }
        var at = 0
        while at < bytes.count {
            func torn(_ why: String) throws -> Int {
                guard isLast else { throw RaftLogError.corrupt(segment: name, offset: at, why: why) }
                if Self.laterBatchFollows(bytes, from: at, lastBatch: lastBatch) {
                    throw RaftLogError.corrupt(segment: name, offset: at, why: "\(why), with fsynced batches after it")
                }
                // Cut the torn tail so new records follow the last good one (and zeros follow them).
                guard truncate(path, off_t(at)) == 0 else { throw RaftLogError.io("truncate \(path): errno \(errno)") }
                return at
            }
            if bytes[at] == 0 && zeros(from: at) { return at }  // end of the records; preallocated space follows
            guard let (length, crc) = Self.header(bytes, at) else { return try torn("record header cut short") }
            guard length >= 1, bytes.count - at - 8 >= length else { return try torn("record of \(length) bytes runs past the end") }
            let body = Array(bytes[(at + 8)..<(at + 8 + length)])
            guard Checksum.crc32c(body) == crc else { return try torn("checksum mismatch") }
            do {
                var r = BinaryReader(Array(body.dropFirst()))
                switch body[0] {
                case 1:
                    let t = Term(try r.u64()), i = LogIndex(try r.u64())
                    guard t < Term.limit else { throw RaftLogError.corrupt(segment: name, offset: at, why: "term out of range") }
                    guard let kind = Entry.Kind(rawValue: try r.u8()) else { throw RaftLogError.corrupt(segment: name, offset: at, why: "unknown entry kind") }
                    try apply(Entry(term: t, index: i, kind: kind, data: try r.blob(max: 1 << 30)))
                case 2: try apply(truncateAfter: LogIndex(try r.u64()))
                case 3:
                    let t = try r.u64(), c = try r.u64(), v = try r.string()
                    hardState = HardState(term: Term(t), vote: v.isEmpty ? nil : v, commit: LogIndex(c))
                case 4:
                    guard body.count == 17, Array(body[1..<9]) == Self.batchMagic else {
                        throw RaftLogError.corrupt(segment: name, offset: at, why: "malformed batch end")
                    }
                    for _ in Self.batchMagic { _ = try r.u8() }
                    lastBatch = try r.u64()
                default: throw RaftLogError.corrupt(segment: name, offset: at, why: "unknown record kind \(body[0])")
                }
                try r.expectEnd()
            } catch let e as RaftLogError {
                throw e
            } catch {
                throw RaftLogError.corrupt(segment: name, offset: at, why: "\(error)")
            }
            at += 8 + length
        }
        return at
    }

    /// Whether records written after an fsync completed lie beyond the damage at `at`: a second
    /// batch end, one numbered two or more past `lastBatch`, or an intact record right after one.
    static func laterBatchFollows(_ bytes: [UInt8], from at: Int, lastBatch: UInt64?) -> Bool {
        let needle: [UInt8] = [4] + batchMagic
        var ends: [(seq: UInt64, end: Int)] = []
        bytes.withUnsafeBytes { raw in
            var from = at
            while from < raw.count, let hit = memchr(raw.baseAddress! + from, 4, raw.count - from) {
                let q = UnsafeRawPointer(hit) - raw.baseAddress!
                from = q + 1
                guard q - 8 >= at, raw.count - q >= needle.count, memcmp(hit, needle, needle.count) == 0,
                    intactRecord(bytes, q - 8) == 17
                else { continue }
                var r = BinaryReader(Array(bytes[(q + 9)..<(q + 17)]))
                if let seq = try? r.u64() { ends.append((seq, q + 17)) }
            }
        }
        if ends.count >= 2 { return true }
        if let s = lastBatch, ends.contains(where: { $0.seq >= s + 2 }) { return true }
        return ends.contains { intactRecord(bytes, $0.end) != nil }
    }

    /// The body length of the record at `i` if its header is there and its checksum holds.
    static func intactRecord(_ bytes: [UInt8], _ i: Int) -> Int? {
        guard let (length, crc) = header(bytes, i), length >= 1, bytes.count - i - 8 >= length,
            Checksum.crc32c(Array(bytes[(i + 8)..<(i + 8 + length)])) == crc
        else { return nil }
        return length
    }

    /// A record header (length, crc) at `i`, if 8 bytes are there.
    static func header(_ bytes: [UInt8], _ i: Int) -> (Int, UInt32)? {
        guard i >= 0, bytes.count - i >= 8 else { return nil }
        var h = BinaryReader(Array(bytes[i..<(i + 8)]))
        guard let length = try? h.u32(), let crc = try? h.u32() else { return nil }
        return (Int(length), crc)
    }

    /// Opens segment `n` for writing at `end` (0 for a new one). The segment is preallocated to
    /// `segmentBytes` and that allocation made durable once, so each later fdatasync flushes
    /// data only, not the file size (etcd does the same).
    private func openSegment(_ n: Int, truncate: Bool, end: Int = 0) throws {
        let path = "\(directory)/\(Self.name(n))"
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o600)
        guard fd >= 0 else { throw RaftLogError.io("open \(path): errno \(errno)") }
        segmentSize = truncate ? 0 : end
        if posix_fallocate(fd, 0, off_t(segmentBytes)) == 0 {
            guard fsync(fd) == 0 else { throw RaftLogError.io("fsync \(path): errno \(errno)") }
        }  // else (a file system without it): records extend the file, fdatasync covers the size
        do { try Files.syncDirectory(of: path) } catch { throw RaftLogError.io("\(error)") }
    }

    private func write(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(segmentSize + done)) }
            if n < 0 { if errno == EINTR { continue }; throw RaftLogError.io("write \(Self.name(segment)): errno \(errno)") }
            done += n
        }
        segmentSize += bytes.count
    }
}
