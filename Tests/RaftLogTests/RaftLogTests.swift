import Files
import Foundation
import Raft
import Simulation
import Testing

@testable import RaftLog

@Suite struct RaftLogTests {
    let dir = NSTemporaryDirectory() + "raftlog-\(UUID().uuidString)"

    static func entries(_ range: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
        range.map { Entry(term: Term(term), index: LogIndex($0), data: Array("cmd\($0)".utf8)) }
    }

    @Test func replaysEntriesTruncationAndHardStateWithOneSyncPerSave() throws {
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 300)  // small segments: rotation is exercised
            var r = Ready()
            r.entries = Self.entries(1...5, term: 1)
            r.hardState = HardState(term: Term(1), vote: "r1", commit: LogIndex(3))
            try log.save(r)
            #expect(log.syncs == 1)
            var conflict = Ready()
            conflict.truncateAfter = LogIndex(3)
            conflict.entries = Self.entries(4...6, term: 2)
            conflict.hardState = HardState(term: Term(2), vote: nil, commit: LogIndex(4))
            try log.save(conflict)
            #expect(log.syncs == 2)
            // Only the commit index moved: written, but no fsync of its own (it is re-learned
            // from the leader after a crash); the next durable save carries it.
            var commitOnly = Ready()
            commitOnly.hardState = HardState(term: Term(2), vote: nil, commit: LogIndex(5))
            try log.save(commitOnly)
            #expect(log.syncs == 2)
            var vote = Ready()
            vote.hardState = HardState(term: Term(2), vote: "r2", commit: LogIndex(5))
            try log.save(vote)
            #expect(log.syncs == 3)
        }
        let reopened = try RaftLog(directory: dir, segmentBytes: 300)
        #expect(reopened.entries == Self.entries(1...3, term: 1) + Self.entries(4...6, term: 2))
        #expect(reopened.hardState == HardState(term: Term(2), vote: "r2", commit: LogIndex(5)))
        #expect(try Files.list(dir).filter { $0.hasSuffix(".log") }.count > 1)
    }

    /// Replay forgives a torn tail only in the last segment, so a segment is never left behind
    /// with records a power loss could tear: commit-only records (written without an fsync of
    /// their own) are fsynced when their segment is closed on rollover.
    @Test func rolloverSyncsTheClosedSegmentsCommitOnlyRecords() throws {
        let log = try RaftLog(directory: dir, segmentBytes: 400)
        var first = Ready()
        first.entries = Self.entries(1...2, term: 1)
        first.hardState = HardState(term: Term(1), vote: "r1", commit: LogIndex(1))
        try log.save(first)
        func segments() throws -> Int { try Files.list(dir).filter { $0.hasSuffix(".log") }.count }
        var commit: UInt64 = 1
        while try segments() == 1 {
            commit += 1
            #expect(commit < 100, "no rollover")
            let before = log.syncs, rolls = try segments() == 1
            var r = Ready()
            r.hardState = HardState(term: Term(1), vote: "r1", commit: LogIndex(commit))
            try log.save(r)
            let rolled = try segments() == 2
            if rolls && rolled {
                #expect(log.syncs == before + 1, "the closed segment's commit-only tail was not fsynced")
            } else {
                #expect(log.syncs == before, "a commit-only save fsynced in place")
            }
        }
    }

    /// Saves one batch per range (term 1) in a 64 KiB segment; its path and bytes.
    func saveBatches(_ batches: [ClosedRange<UInt64>]) throws -> (String, [UInt8]) {
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 16)
            for b in batches { var r = Ready(); r.entries = Self.entries(b, term: 1); try log.save(r) }
        }
        let path = dir + "/" + RaftLog.name(0)
        return (path, try Files.read(path))
    }

    /// Where each record of a segment starts (walking the length fields up to the zeros).
    static func recordStarts(_ bytes: [UInt8]) -> [Int] {
        var starts: [Int] = [], at = 0
        while at + 8 <= bytes.count, bytes[at..<(at + 8)].contains(where: { $0 != 0 }) {
            starts.append(at)
            at += 8 + Int(bytes[at]) + Int(bytes[at + 1]) << 8 + Int(bytes[at + 2]) << 16 + Int(bytes[at + 3]) << 24
        }
        return starts
    }

    /// The last write torn by a crash: its end never reached the disk — the preallocated zeros
    /// stay (`zeroed`), or on a file system without preallocation the file is short. A cut inside
    /// the batch end (the last 25 bytes) leaves the batch's entry whole; it stays (not acknowledged,
    /// but Raft may keep it, and the leader overwrites it if it lost).
    @Test(arguments: [1, 9, 24, 26, 30, 45], [true, false])
    func tornTailIsCutAndLoggingContinues(chop: Int, zeroed: Bool) throws {
        let (path, written) = try saveBatches([1...3, 4...4])
        var bytes = written
        #expect(bytes.count == 1 << 16)  // preallocated
        let end = Self.recordStarts(bytes).last! + 25  // the batch end closes the records
        if zeroed {
            for i in (end - chop)..<end { bytes[i] = 0 }
        } else {
            bytes = Array(bytes[..<(end - chop)])
        }
        try Files.writeAtomically(bytes, to: path)
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 16)
            #expect(log.entries == Self.entries(1...(chop <= 25 ? 4 : 3), term: 1))
            var c = Ready(); c.entries = Self.entries(4...5, term: 2); try log.save(c)
        }
        #expect(try RaftLog(directory: dir, segmentBytes: 1 << 16).entries == Self.entries(1...3, term: 1) + Self.entries(4...5, term: 2))
    }

    /// A crash mid-batch can leave a later page of the batch on disk and an earlier one not: the
    /// batch's intact records after the hole were never acknowledged either, and are cut with it.
    @Test(arguments: [true, false])
    func holeInTheLastBatchIsATornTail(zeroHeader: Bool) throws {
        let (path, written) = try saveBatches([1...3, 4...6])
        var bytes = written
        let starts = Self.recordStarts(bytes)
        #expect(starts.count == 8)  // 3 entries, batch end, 3 entries, batch end
        let hole = zeroHeader ? starts[4]..<(starts[4] + 12) : (starts[4] + 10)..<(starts[4] + 20)
        for i in hole { bytes[i] = 0 }
        try Files.writeAtomically(bytes, to: path)
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 16)
            #expect(log.entries == Self.entries(1...3, term: 1))
            var c = Ready(); c.entries = Self.entries(4...4, term: 2); try log.save(c)
        }
        #expect(try RaftLog(directory: dir, segmentBytes: 1 << 16).entries == Self.entries(1...3, term: 1) + Self.entries(4...4, term: 2))
    }

    /// Damage followed by a later batch is in fsynced data, even in the last segment and even
    /// when it is a length field that makes the record run past the end or a zeroed record.
    @Test(arguments: ["length past the end", "length zero", "zeroed record", "payload bit", "batch end bit"])
    func damageBeforeALaterBatchStopsTheNode(damage: String) throws {
        let (path, written) = try saveBatches([1...1, 2...2, 3...3])
        var bytes = written
        let starts = Self.recordStarts(bytes)
        #expect(starts.count == 6)  // entry, batch end, three times
        let second = starts[2]
        switch damage {
        case "length past the end": bytes[second + 3] = 0x7F
        case "length zero": for i in 0..<4 { bytes[second + i] = 0 }
        case "zeroed record": for i in second..<starts[3] { bytes[i] = 0 }
        case "payload bit": bytes[second + 12] ^= 1
        default: bytes[starts[3] + 12] ^= 1
        }
        try Files.writeAtomically(bytes, to: path)
        #expect {
            try RaftLog(directory: dir, segmentBytes: 1 << 16)
        } throws: { e in
            guard case .corrupt(let segment, let offset, _) = e as? RaftLogError else { return false }
            return segment == RaftLog.name(0) && offset == (damage == "batch end bit" ? starts[3] : second)
        }
    }

    @Test func corruptionInTheMiddleStopsTheNode() throws {
        do {
            let log = try RaftLog(directory: dir)
            for i in 1...4 as ClosedRange<UInt64> { var r = Ready(); r.entries = Self.entries(i...i, term: 1); try log.save(r) }
        }
        let path = dir + "/" + RaftLog.name(0)
        var bytes = try Files.read(path)
        bytes[12] ^= 0x01  // inside the first record's payload
        try Files.writeAtomically(bytes, to: path)
        #expect(throws: RaftLogError.self) { try RaftLog(directory: dir) }
    }
}

@Suite struct RaftLogSnapshotTests {
    let dir = NSTemporaryDirectory() + "raftlog-snap-\(UUID().uuidString)"

    @Test func snapshotBoundsTheLogAndSurvivesRestart() throws {
        let snap = Snapshot(index: LogIndex(6), term: Term(1), voters: ["r1", "r2", "r3"], learners: ["r4"], data: Array("state@6".utf8))
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 200)
            var r = Ready(); r.entries = RaftLogTests.entries(1...10, term: 1); r.hardState = HardState(term: Term(1), vote: nil, commit: LogIndex(8))
            try log.save(r)
            try log.saveSnapshot(snap)
            var more = Ready(); more.entries = RaftLogTests.entries(11...12, term: 2); try log.save(more)
            // The segments written before the snapshot are gone.
            #expect(!Files.exists(dir + "/" + RaftLog.name(0)))
        }
        let reopened = try RaftLog(directory: dir, segmentBytes: 200)
        #expect(reopened.snapshot == snap)
        #expect(reopened.entries == RaftLogTests.entries(7...10, term: 1) + RaftLogTests.entries(11...12, term: 2))
        #expect(reopened.hardState.commit == LogIndex(8))
    }

    /// A snapshot covering every entry leaves only term and vote for the fresh segment: they are
    /// fsynced there before the old segments (which held them durably) are deleted.
    @Test func snapshotOfEverythingKeepsTermAndVoteDurable() throws {
        do {
            let log = try RaftLog(directory: dir)
            var r = Ready(); r.entries = RaftLogTests.entries(1...3, term: 2); r.hardState = HardState(term: Term(2), vote: "r1", commit: LogIndex(3))
            try log.save(r)
            let before = log.syncs
            try log.saveSnapshot(Snapshot(index: LogIndex(3), term: Term(2), voters: ["r1"], learners: [], data: [7]))
            #expect(log.syncs == before + 1)
        }
        let reopened = try RaftLog(directory: dir)
        #expect(reopened.entries.isEmpty)
        #expect(reopened.hardState == HardState(term: Term(2), vote: "r1", commit: LogIndex(3)))
    }

    @Test func damagedSnapshotRefusesToStart() throws {
        do {
            let log = try RaftLog(directory: dir)
            try log.saveSnapshot(Snapshot(index: LogIndex(1), term: Term(1), voters: ["a"], learners: [], data: [1, 2, 3]))
        }
        var bytes = try Files.read(dir + "/snapshot")
        bytes[bytes.count - 1] ^= 1
        try Files.writeAtomically(bytes, to: dir + "/snapshot")
        #expect(throws: RaftLogError.self) { try RaftLog(directory: dir) }
    }
}

/// The write-ahead log on the simulation kit's tearing disk, over many seeds: a run of saves,
/// each acknowledged after its fsync, then a crash during the next one that keeps any prefix of
/// its bytes (sometimes with a bit flipped in that torn part), and in some seeds a bit rotting in
/// what was synced. Reopened, the log holds every acknowledged entry and at most a prefix of the
/// torn batch, each entry exactly as written; a rotten bit in synced data stops the node, unless
/// it is in the last synced batch, where it can look like a torn tail (no checksum tells a bit
/// rotted after the fsync from a write that never finished; etcd's WAL shares this limit): then
/// the log is still an exact prefix, never altered.
@Suite struct RaftLogTearingDiskTests {
    static func run(seed: UInt64) throws -> (problems: [String], rotLost: Bool) {
        var rng = SeededRandom(seed: seed)
        let dir = NSTemporaryDirectory() + "raftlog-tear-\(seed)-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Saves: 1 to 6 batches of 1 to 4 entries; the last is the one in flight at the crash.
        var batches: [[Entry]] = [], next: UInt64 = 1
        for _ in 0..<(1 + rng.below(6)) {
            let n = UInt64(1 + rng.below(4))
            batches.append(
                (next..<(next + n)).map {
                    Entry(term: Term(1), index: LogIndex($0), data: (0..<rng.below(300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
                })
            next += n
        }
        var ends: [Int] = []
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 20)
            let path = dir + "/" + RaftLog.name(0)
            for b in batches {
                var r = Ready(); r.entries = b; try log.save(r)
                ends.append(RaftLogTests.recordStarts(try Files.read(path)).last! + 25)
            }
        }
        let path = dir + "/" + RaftLog.name(0)
        let written = try Files.read(path)
        var disk = SimFile()
        disk.tornBitFlipRate = 0.3
        var at = 0
        for end in ends {
            disk.append(Array(written[at..<end]))
            at = end
            if end != ends.last { disk.sync() }
        }
        let synced = disk.durable.count
        disk.crash(rng: &rng)
        let rotAt = rng.chance(0.25) ? disk.rot(rng: &rng).flatMap { $0 < synced ? $0 : nil } : nil
        let preallocated = rng.chance(0.5)
        try Files.writeAtomically(disk.durable + (preallocated ? [UInt8](repeating: 0, count: (1 << 20) - disk.durable.count) : []), to: path)

        let acknowledged = batches.dropLast().flatMap { $0 }
        let log: RaftLog
        do { log = try RaftLog(directory: dir, segmentBytes: 1 << 20) } catch let e as RaftLogError {
            guard case .corrupt = e, rotAt != nil else { return (["refused to open after a torn write alone: \(e)"], false) }
            return ([], false)
        }
        let all = batches.flatMap { $0 }
        guard log.entries.count <= all.count, Array(all.prefix(log.entries.count)) == log.entries else {
            return (["replayed \(log.entries.count) entries that are not a prefix of those written"], false)
        }
        if log.entries.count < acknowledged.count {
            let lastBatchStart = ends.count >= 2 ? (ends.count >= 3 ? ends[ends.count - 3] : 0) : 0
            guard let r = rotAt, r >= lastBatchStart else { return (["lost acknowledged entries: \(log.entries.count) of \(acknowledged.count)"], false) }
            return ([], true)
        }
        return ([], false)
    }

    @Test func overTwoHundredSeeds() throws {
        var lostToRot = 0
        let failures = Seeds.each(0..<200) { seed in
            do {
                let (problems, lost) = try Self.run(seed: seed)
                if lost { lostToRot += 1 }
                return problems
            } catch { return ["\(error)"] }
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("raftlog-sim: 200 crashes on a tearing disk; \(lostToRot) lost acknowledged entries to a rotten bit in the last synced batch")
    }
}
