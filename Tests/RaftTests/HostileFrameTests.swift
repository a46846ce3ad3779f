import Testing

@testable import Raft

/// A frame that decodes is not yet a frame a correct peer sends. Whatever its numbers, the core
/// drops it, counts it, and keeps its log, commit and term, instead of trapping on `+ 1` or
/// following a log with holes.
@Suite struct HostileFrameTests {
    /// Follower "f" holding entries 1...3 of term 1 from leader "l", entries 1...2 committed.
    static func follower() -> RaftNode {
        var f = RaftNode(id: "f", peers: ["l", "f"], seed: 1)
        let entries = (1...3).map { Entry(term: Term(1), index: LogIndex(UInt64($0)), data: [UInt8($0)]) }
        _ = f.step(
            Envelope(
                from: "l", to: "f",
                message: .append(
                    term: Term(1), prevIndex: .zero, prevTerm: Term(0), entries: entries,
                    commit: LogIndex(2), readSeq: 0)))
        return f
    }

    /// "l" leading "f" at term 1 (f answers every request for a vote).
    static func leader() -> RaftNode {
        var l = RaftNode(id: "l", peers: ["l", "f"], seed: 1)
        func answer(_ r: Ready) {
            for m in r.messages {
                switch m.message {
                case .preVote(let t, _, _): answer(l.step(Envelope(from: "f", to: "l", message: .preVoteReply(term: t, granted: true))))
                case .vote(let t, _, _, _): answer(l.step(Envelope(from: "f", to: "l", message: .voteReply(term: t, granted: true))))
                default: break
                }
            }
        }
        for _ in 0..<200 where !l.isLeader { answer(l.tick()) }
        precondition(l.isLeader, "test setup: l did not become leader")
        return l
    }

    static func e(_ t: UInt64, _ i: UInt64) -> Entry { Entry(term: Term(t), index: LogIndex(i), data: [7]) }

    static let toFollower: [(String, RaftMessage)] = [
        ("term at UInt64.max", .append(term: Term(.max), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [], commit: .zero, readSeq: 0)),
        ("vote at UInt64.max", .vote(term: Term(.max), lastIndex: LogIndex(9), lastTerm: Term(1), transfer: true)),
        ("pre-vote at UInt64.max", .preVote(term: Term(.max), lastIndex: LogIndex(9), lastTerm: Term(1))),
        ("a hole after prevIndex", .append(term: Term(1), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [e(1, 5)], commit: LogIndex(5), readSeq: 0)),
        (
            "entries out of order",
            .append(term: Term(1), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [e(1, 5), e(1, 4)], commit: LogIndex(5), readSeq: 0)
        ),
        (
            "an entry of a later term than the message",
            .append(term: Term(1), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [e(2, 4)], commit: .zero, readSeq: 0)
        ),
        (
            "entries running past the index limit",
            .append(term: Term(1), prevIndex: LogIndex(.max - 1), prevTerm: Term(1), entries: [e(1, .max), e(1, 0)], commit: .zero, readSeq: 0)
        ),
        ("a committed entry overwritten", .append(term: Term(1), prevIndex: .zero, prevTerm: Term(0), entries: [e(0, 1)], commit: .zero, readSeq: 0)),
        (
            "a snapshot chunk past the size limit",
            .installSnapshot(
                term: Term(1), meta: Snapshot(index: LogIndex(9), term: Term(1), voters: ["l"], learners: [], data: [1]),
                offset: Snapshot.maxBytes, done: true)
        ),
        ("commit beyond the index limit", .append(term: Term(1), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [], commit: LogIndex(.max), readSeq: 0)),
    ]

    @Test(arguments: toFollower.indices)
    func followerDropsWhatNoLeaderSends(i: Int) {
        let (what, m) = Self.toFollower[i]
        var f = Self.follower()
        let (log, commit, term) = (f.log, f.commit, f.term)
        let r = f.step(Envelope(from: "l", to: "f", message: m))
        #expect(f.rejected == 1, "\(what): not counted as rejected")
        #expect(r.messages.isEmpty && r.entries.isEmpty && r.hardState == nil, "\(what): acted on")
        #expect(f.log == log && f.commit == commit && f.term == term, "\(what): state changed")
        // Still a working follower: the next correct append is taken.
        let ok = f.step(
            Envelope(
                from: "l", to: "f",
                message: .append(
                    term: Term(1), prevIndex: LogIndex(3), prevTerm: Term(1), entries: [Self.e(1, 4)],
                    commit: LogIndex(4), readSeq: 0)))
        #expect(
            f.lastIndex == LogIndex(4) && f.commit == LogIndex(4) && ok.committed.map(\.index) == [LogIndex(3), LogIndex(4)],
            "\(what): follower broken afterwards")
    }

    static let toLeader: [(String, RaftMessage)] = [
        ("success at UInt64.max", .appendReply(term: Term(1), success: true, index: LogIndex(.max), readSeq: 0)),
        ("success past the leader's log", .appendReply(term: Term(1), success: true, index: LogIndex(50), readSeq: 0)),
        ("rejection hint at UInt64.max", .appendReply(term: Term(1), success: false, index: LogIndex(.max), readSeq: 0)),
        ("snapshot reply at UInt64.max", .installSnapshotReply(term: Term(1), index: LogIndex(.max), offset: 0, done: true)),
    ]

    @Test(arguments: toLeader.indices)
    func leaderDropsRepliesNoFollowerSends(i: Int) {
        let (what, m) = Self.toLeader[i]
        var l = Self.leader()
        let (last, commit) = (l.lastIndex, l.commit)
        _ = l.step(Envelope(from: "f", to: "l", message: m))
        #expect(l.rejected == 1, "\(what): not counted as rejected")
        #expect(l.isLeader && l.lastIndex == last && l.commit == commit, "\(what): leader state changed")
        guard case .leader(let p) = l.role else { return }
        #expect((p.match["f"] ?? .zero) <= l.lastIndex, "\(what): follower's match moved past the log")
    }

    /// A snapshot the state machine cannot restore is refused before it replaces anything: were it
    /// installed (and saved), every later start would fail on it.
    @Test func undecodableSnapshotIsRefusedBeforeItIsInstalled() {
        var f = Self.follower()
        f.snapshotCheck = { $0.first == 1 }
        let (log, commit) = (f.log, f.commit)
        func chunk(_ data: [UInt8]) -> RaftMessage {
            .installSnapshot(
                term: Term(1), meta: Snapshot(index: LogIndex(9), term: Term(1), voters: ["l", "f"], learners: [], data: data), offset: 0, done: true)
        }
        let bad = f.step(Envelope(from: "l", to: "f", message: chunk([0, 0, 0])))
        #expect(bad.snapshot == nil && bad.hardState == nil && bad.messages.isEmpty)
        #expect(f.rejected == 1 && f.log == log && f.commit == commit && f.snapshot == nil)
        let good = f.step(Envelope(from: "l", to: "f", message: chunk([1, 2, 3])))
        #expect(good.snapshot?.data == [1, 2, 3] && f.commit == LogIndex(9))
    }
}
