import ChunkStore
import Foundation
import Raft
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

    /// The last write torn by a crash: its end never reached the disk — the preallocated zeros
    /// stay (`zeroed`), or on a file system without preallocation the file is short.
    @Test(arguments: [1, 3, 9, 20], [true, false])
    func tornTailIsCutAndLoggingContinues(chop: Int, zeroed: Bool) throws {
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 16)
            var a = Ready(); a.entries = Self.entries(1...3, term: 1); try log.save(a)
            var b = Ready(); b.entries = Self.entries(4...4, term: 1); try log.save(b)
        }
        let path = dir + "/" + RaftLog.name(0)
        var bytes = try Files.read(path)
        #expect(bytes.count == 1 << 16)  // preallocated
        let end = bytes.lastIndex(where: { $0 != 0 })! + 1
        if zeroed {
            for i in (end - chop)..<end { bytes[i] = 0 }
        } else {
            bytes = Array(bytes[..<(end - chop)])
        }
        try Files.writeAtomically(bytes, to: path)
        do {
            let log = try RaftLog(directory: dir, segmentBytes: 1 << 16)
            #expect(log.entries == Self.entries(1...3, term: 1))
            var c = Ready(); c.entries = Self.entries(4...5, term: 2); try log.save(c)
        }
        #expect(try RaftLog(directory: dir, segmentBytes: 1 << 16).entries == Self.entries(1...3, term: 1) + Self.entries(4...5, term: 2))
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
