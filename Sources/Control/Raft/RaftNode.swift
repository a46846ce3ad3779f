// Over 400 lines on purpose: the role transitions of one state machine (elections, replication,
// commit, ReadIndex, transfer, membership) read and review best side by side; snapshots, which
// stand apart, are in Snapshots.swift.

/// One Raft peer as a sans-IO state machine (etcd/raft's shape): `tick`, `step` and `propose` take
/// inputs and return a `Ready` of things to persist, send and apply. Time is logical ticks;
/// randomness (election timeouts) comes from the seeded generator given at start.
///
/// Implemented: leader election with pre-vote (a partitioned node cannot inflate terms) and
/// check-quorum (a leader that cannot hear a quorum steps down; followers that heard a leader
/// within the election timeout refuse votes — the "leader lease"), log replication with
/// consistency checks and fast back-up, commit by quorum of the current term, and apply.
/// Also ReadIndex, leadership transfer, single-server membership change and learners.
/// Also snapshots with chunked InstallSnapshot (Snapshots.swift).
public struct RaftNode: Sendable {
    public enum Role: Equatable, Sendable {
        case follower(leader: String?)
        case preCandidate(granted: Set<String>)
        case candidate(granted: Set<String>)
        case leader(Progress)
    }

    /// Replication state of every follower, kept by the leader.
    public struct Progress: Equatable, Sendable {
        public var next: [String: LogIndex]
        public var match: [String: LogIndex]
        /// Followers heard from since the last check-quorum round.
        public var recentlyActive: Set<String>
        /// Bytes of the current snapshot each lagging follower acknowledged.
        public var snapshotOffset: [String: Int] = [:]
        /// Followers whose log position is uncertain (new leader, or a rejection): one append at a
        /// time until one succeeds. The others are pipelined: `next` moves past what was sent
        /// without waiting for the reply.
        public var probing: Set<String> = []
    }

    public let id: String
    /// The configuration before any config entry in the log.
    let initialVoters: Set<String>
    public internal(set) var voters: Set<String>
    public internal(set) var learners: Set<String> = []
    /// Everyone this node replicates to when it leads.
    public var peers: [String] { voters.union(learners).subtracting([id]).sorted() }
    var voterPeers: [String] { voters.subtracting([id]).sorted() }
    public let settings: RaftSettings
    public internal(set) var role: Role = .follower(leader: nil)
    public internal(set) var hardState: HardState
    /// Entries after the snapshot; log[i] has index offset + i + 1.
    public internal(set) var log: [Entry]
    public internal(set) var snapshot: Snapshot?
    /// Snapshot being received: metadata and bytes so far.
    var incoming: (meta: Snapshot, data: [UInt8])?
    public internal(set) var applied: LogIndex
    var rng: SeededRandom
    var electionElapsed = 0
    var heartbeatElapsed = 0
    var electionTimeout: Int
    var ready = Ready()
    /// ReadIndex rounds: a read waits until a quorum answered an append sent after it arrived.
    var readSeq: UInt64 = 0
    var pendingReads: [PendingRead] = []
    /// Leadership transfer in progress: proposals wait; abandoned after an election timeout.
    public internal(set) var transferTarget: String?
    var transferElapsed = 0
    /// Messages dropped as malformed (see `admissible`) or as contradicting committed entries.
    public internal(set) var rejected = 0
    /// Whether a fully received snapshot's data is one the state machine can restore; one it
    /// cannot is dropped and counted in `rejected` before anything changes or reaches the disk.
    public var snapshotCheck: @Sendable ([UInt8]) -> Bool = { _ in true }

    struct PendingRead: Sendable {
        var id: UInt64
        var index: LogIndex
        var seq: UInt64
        var acks: Set<String>
    }

    /// Starts (or restarts) from durable state: the hard state and the log as persisted.
    /// `peers` is the initial voter set (this node included when it is one); config entries in
    /// the log change it from there.
    public init(
        id: String, peers: [String], hardState: HardState = HardState(), snapshot: Snapshot? = nil, log: [Entry] = [],
        settings: RaftSettings = RaftSettings(), seed: UInt64
    ) {
        self.id = id
        initialVoters = Set(peers)
        voters = Set(peers)
        self.settings = settings
        self.hardState = hardState
        self.log = log
        // The shell restores the state machine from the snapshot; later committed entries are
        // re-applied after a restart.
        self.snapshot = snapshot
        applied = snapshot?.index ?? .zero
        rng = SeededRandom(seed: seed)
        electionTimeout = settings.electionTicks
        resetElectionTimeout()
        recomputeConfig()
    }

    // MARK: Queries

    public var term: Term { hardState.term }
    public var commit: LogIndex { hardState.commit }
    public var lastIndex: LogIndex { LogIndex(offset + UInt64(log.count)) }
    public var lastTerm: Term { log.last?.term ?? snapshot?.term ?? Term(0) }
    /// Index of the last entry folded into the snapshot (0 without one).
    var offset: UInt64 { snapshot?.index.value ?? 0 }
    /// Array position of index i in `log`.
    func pos(_ i: LogIndex) -> Int { Int(i.value - offset) - 1 }
    public var isLeader: Bool { if case .leader = role { true } else { false } }
    public var leader: String? {
        switch role {
        case .leader: id
        case .follower(let l): l
        case .preCandidate, .candidate: nil
        }
    }
    var quorum: Int { voters.count / 2 + 1 }
    var selfVotes: Int { voters.contains(id) ? 1 : 0 }

    func term(at i: LogIndex) -> Term? {
        if let s = snapshot, i == s.index { return s.term }
        if i == .zero { return snapshot == nil ? Term(0) : nil }
        guard i.value > offset, i <= lastIndex else { return nil }  // compacted or beyond the end
        return log[pos(i)].term
    }

    // MARK: Inputs

    /// Advances logical time by one tick.
    public mutating func tick() -> Ready {
        switch role {
        case .leader(var progress):
            heartbeatElapsed += 1
            electionElapsed += 1
            if transferTarget != nil {
                transferElapsed += 1
                if transferElapsed >= settings.electionTicks { transferTarget = nil }  // target did not take over
            }
            if electionElapsed >= settings.electionTicks {
                electionElapsed = 0
                // Check-quorum: a leader that has not heard from a quorum steps down.
                if progress.recentlyActive.intersection(voters).count + selfVotes < quorum {
                    becomeFollower(term: term, leader: nil)
                    return takeReady()
                }
                progress.recentlyActive = []
                role = .leader(progress)
            }
            if heartbeatElapsed >= settings.heartbeatTicks {
                heartbeatElapsed = 0
                for p in peers { sendAppend(to: p) }
            }
        case .follower, .preCandidate, .candidate:
            electionElapsed += 1
            if electionElapsed >= electionTimeout && voters.contains(id) { campaign(pre: true) }
        }
        return takeReady()
    }

    /// Campaigns now instead of waiting out the election timeout: for a node that knows it is
    /// the only voter (a cluster's first node), so it leads at once. Pre-vote still applies.
    public mutating func campaignNow() -> Ready {
        if !isLeader { campaign(pre: true) }
        return takeReady()
    }

    /// The shell lost its connection to `peer` (the process died: its sockets closed). When that
    /// is this follower's leader, the lease ends now and the node stands after a short random
    /// delay instead of a whole election timeout. Only when an election starts changes, so safety
    /// is untouched; voters still connected to a live leader keep their lease and refuse it.
    public mutating func peerUnreachable(_ peer: String) -> Ready {
        guard case .follower(let l) = role, l == peer else { return takeReady() }
        role = .follower(leader: nil)
        // Staggered by rank among the remaining voters (2 ticks apart), so the survivors do not
        // split the vote; a stale first candidate is refused by the log check and the next one
        // stands 2 ticks later. A follower that did not notice keeps its lease and timeout.
        let rank = voters.subtracting([peer]).sorted().firstIndex(of: id) ?? 0
        electionTimeout = electionElapsed + 1 + 2 * rank
        return takeReady()
    }

    /// Hands leadership to `target` (Raft thesis §3.10): bring it up to date, then tell it to
    /// campaign at once. Proposals are refused meanwhile. nil when not leader or `target` is no voter.
    public mutating func transferLeadership(to target: String) -> Ready? {
        guard case .leader = role, voters.contains(target), target != id else { return nil }
        transferTarget = target
        transferElapsed = 0
        sendAppend(to: target)
        sendTimeoutNowIfCaughtUp()
        return takeReady()
    }

    mutating func sendTimeoutNowIfCaughtUp() {
        guard case .leader(let progress) = role, let t = transferTarget, progress.match[t] == lastIndex else { return }
        send(t, .timeoutNow(term: term))
    }

    /// Proposes a command; nil when this node is not the leader (ask `leader`) or is handing over.
    public mutating func propose(_ data: [UInt8]) -> (index: LogIndex, ready: Ready)? {
        propose(batch: [data]).map { ($0.first, $0.ready) }
    }

    /// Proposes several commands as consecutive entries: one Ready, so one fsync and one append
    /// message per follower cover them all (group commit). `first` is the first one's index.
    public mutating func propose(batch: [[UInt8]]) -> (first: LogIndex, ready: Ready)? {
        guard case .leader = role, transferTarget == nil, !batch.isEmpty else { return nil }
        let first = lastIndex + 1
        appendLocal(batch.enumerated().map { Entry(term: term, index: first + UInt64($0.offset), data: $0.element) })
        for p in peers { sendAppend(to: p) }
        maybeCommit()
        return (first, takeReady())
    }

    /// ReadIndex (Raft thesis §6.4): a linearizable read without writing to the log. The leader
    /// notes its commit index, proves it is still leader with one heartbeat round, and reports a
    /// `ReadState`; the read is served once that index is applied. nil when not leader, or when
    /// this term has not committed an entry yet (the commit index may then be stale).
    public mutating func readIndex(id: UInt64) -> Ready? {
        guard case .leader = role, term(at: commit) == term else { return nil }
        readSeq += 1
        pendingReads.append(PendingRead(id: id, index: commit, seq: readSeq, acks: []))
        if quorum == 1 { confirmReads(from: "", readSeq: readSeq) } else { for p in peers { sendAppend(to: p) } }
        return takeReady()
    }

    mutating func confirmReads(from peer: String, readSeq seen: UInt64) {
        guard case .leader = role else { return }
        var confirmed: [PendingRead] = []
        pendingReads = pendingReads.compactMap { r in
            var r = r
            if r.seq <= seen && voters.contains(peer) { r.acks.insert(peer) }
            if r.acks.count + selfVotes >= quorum { confirmed.append(r); return nil }
            return r
        }
        for r in confirmed { ready.readStates.append(ReadState(id: r.id, index: r.index)) }
    }

    /// Handles one message from a peer. A message no correct peer sends (numbers past the
    /// limits, entries that are not consecutive, a reply claiming entries this leader does not
    /// have) is dropped and counted in `rejected`, never acted on: a peer's bad frame must not
    /// trap the node or corrupt its log.
    public mutating func step(_ env: Envelope) -> Ready {
        let m = env.message
        guard admissible(m) else {
            rejected += 1
            return takeReady()
        }
        switch m {
        case .preVote:
            // Pre-votes carry a proposed term: they never change ours.
            break
        case .preVoteReply(let t, let granted) where !granted && t > term:
            becomeFollower(term: t, leader: nil)
        case .preVoteReply:
            break
        default:
            if m.term > term {
                if case .vote(_, _, _, false) = m, inLease { return takeReady() }  // check-quorum lease: a live leader exists
                let leader: String? = { if case .append = m { env.from } else { nil } }()
                becomeFollower(term: m.term, leader: leader)
            } else if m.term < term {
                // Stale sender: tell it the current term so it steps down.
                switch m {
                // A stale leader must hear our term, or (pre-vote and the lease keeping us from
                // winning) it would keep leading while we never rejoin (etcd does the same).
                case .append, .installSnapshot, .timeoutNow: send(env.from, .appendReply(term: term, success: false, index: lastIndex, readSeq: 0))
                case .vote: send(env.from, .voteReply(term: term, granted: false))
                default: break
                }
                return takeReady()
            }
        }
        switch m {
        case .preVote(let t, let li, let lt):
            let granted = t > term && logIsUpToDate(lastIndex: li, lastTerm: lt) && !inLease
            send(env.from, .preVoteReply(term: granted ? t : term, granted: granted))
        case .vote(_, let li, let lt, _):
            let canVote = hardState.vote == nil || hardState.vote == env.from
            let granted = canVote && logIsUpToDate(lastIndex: li, lastTerm: lt)
            if granted {
                hardState.vote = env.from
                ready.hardState = hardState
                electionElapsed = 0
            }
            send(env.from, .voteReply(term: term, granted: granted))
        case .preVoteReply(_, let granted):
            if case .preCandidate(var votes) = role, granted, voters.contains(env.from) {
                votes.insert(env.from)
                role = .preCandidate(granted: votes)
                if votes.count >= quorum { campaign(pre: false) }
            }
        case .voteReply(_, let granted):
            if case .candidate(var votes) = role, granted, voters.contains(env.from) {
                votes.insert(env.from)
                role = .candidate(granted: votes)
                if votes.count >= quorum { becomeLeader() }
            }
        case .append(_, let prevIndex, let prevTerm, let entries, let leaderCommit, let readSeq):
            becomeFollower(term: term, leader: env.from)
            handleAppend(from: env.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, leaderCommit: leaderCommit, readSeq: readSeq)
        case .appendReply(_, let success, let index, let readSeq):
            confirmReads(from: env.from, readSeq: readSeq)
            handleAppendReply(from: env.from, success: success, index: index)
            if transferTarget == env.from { sendTimeoutNowIfCaughtUp() }
        case .installSnapshot(_, let meta, let offset, let done):
            becomeFollower(term: term, leader: env.from)
            receiveSnapshotChunk(from: env.from, meta: meta, offset: offset, done: done)
        case .installSnapshotReply(_, let index, let offset, let done):
            snapshotReply(from: env.from, index: index, offset: offset, done: done)
        case .timeoutNow:
            // Only a follower of the sender acts on it; skip pre-vote, the leader asked for this.
            if case .follower(let l) = role, l == env.from, voters.contains(id) { campaign(pre: false, transfer: true) }
        }
        return takeReady()
    }

    /// Every number bounded before any arithmetic touches it; append entries consecutive after
    /// `prevIndex`, of no later term than the message; replies name no index past our log.
    func admissible(_ m: RaftMessage) -> Bool {
        guard m.term < Term.limit else { return false }
        switch m {
        case .preVote(_, let li, let lt), .vote(_, let li, let lt, _):
            return li < LogIndex.limit && lt <= m.term
        case .preVoteReply, .voteReply, .timeoutNow:
            return true
        case .append(let t, let prevIndex, let prevTerm, let entries, let c, _):
            guard prevIndex < LogIndex.limit, c < LogIndex.limit, prevTerm <= t,
                UInt64(entries.count) < LogIndex.limit.value - prevIndex.value
            else { return false }
            var last = prevTerm
            for (i, e) in entries.enumerated() {
                guard e.index == prevIndex + UInt64(i + 1), e.term >= last, e.term <= t else { return false }
                last = e.term
            }
            return true
        case .appendReply(_, let success, let index, _):
            return index < LogIndex.limit && (!success || index <= lastIndex)
        case .installSnapshot(_, let meta, let offset, _):
            return meta.index < LogIndex.limit && meta.term <= m.term && offset >= 0
                && offset <= Snapshot.maxBytes - meta.data.count
        case .installSnapshotReply(_, let index, let offset, _):
            return index <= lastIndex && offset >= 0 && offset <= Snapshot.maxBytes
        }
    }

    /// Check-quorum lease: while a leader was heard within the election timeout, vote and pre-vote
    /// requests are refused, so a node rejoining from a partition cannot depose a healthy leader.
    var inLease: Bool {
        if case .follower(let l) = role, l != nil, electionElapsed < settings.electionTicks { return true }
        if case .leader = role { return true }
        return false
    }

    // MARK: Elections

    mutating func campaign(pre: Bool, transfer: Bool = false) {
        // Only voters stand: a learner counting its own vote could win with a minority.
        guard voters.contains(id) else { return }
        resetElectionTimeout()
        electionElapsed = 0
        if pre {
            role = .preCandidate(granted: [id])
            if quorum == 1 { campaign(pre: false); return }
            for p in voterPeers { send(p, .preVote(term: term.next, lastIndex: lastIndex, lastTerm: lastTerm)) }
        } else {
            hardState.term = term.next
            hardState.vote = id
            ready.hardState = hardState
            role = .candidate(granted: [id])
            if quorum == 1 { becomeLeader(); return }
            for p in voterPeers { send(p, .vote(term: term, lastIndex: lastIndex, lastTerm: lastTerm, transfer: transfer)) }
        }
    }

    func logIsUpToDate(lastIndex li: LogIndex, lastTerm lt: Term) -> Bool {
        lt > lastTerm || (lt == lastTerm && li >= lastIndex)
    }

    mutating func becomeFollower(term t: Term, leader: String?) {
        if t > term {
            hardState.term = t
            hardState.vote = nil
            ready.hardState = hardState
        }
        if case .follower(let old) = role, old == leader, leader != nil {
            electionElapsed = 0
            return
        }
        role = .follower(leader: leader)
        transferTarget = nil
        pendingReads = []  // a deposed leader cannot confirm reads; clients retry elsewhere
        electionElapsed = 0
        resetElectionTimeout()
    }

    mutating func becomeLeader() {
        var next: [String: LogIndex] = [:], match: [String: LogIndex] = [:]
        for p in peers { next[p] = lastIndex + 1; match[p] = .zero }
        role = .leader(Progress(next: next, match: match, recentlyActive: [], probing: Set(peers)))
        heartbeatElapsed = 0
        electionElapsed = 0
        appendLocal([Entry(term: term, index: lastIndex + 1, data: [])])
        for p in peers { sendAppend(to: p) }
        maybeCommit()
    }

    mutating func resetElectionTimeout() {
        electionTimeout = settings.electionTicks + Int(rng.next() % UInt64(settings.electionTicks))
    }

    // MARK: Replication

    mutating func appendLocal(_ entries: [Entry]) {
        log.append(contentsOf: entries)
        ready.entries.append(contentsOf: entries)
        if entries.contains(where: { $0.kind == .config }) { recomputeConfig() }
    }

    mutating func sendAppend(to p: String) {
        guard case .leader(var progress) = role, let next = progress.next[p] else { return }
        let prev = next - 1
        guard let prevTerm = term(at: prev) else { sendSnapshot(to: p); return }  // the entries it needs are compacted
        let from = pos(next)
        var upTo = from, bytes = 0
        // Bounded in count and in bytes (at least one entry, however large).
        while upTo < log.count && upTo - from < settings.maxEntriesPerAppend && (upTo == from || bytes + log[upTo].data.count <= settings.maxBytesPerAppend) {
            bytes += log[upTo].data.count
            upTo += 1
        }
        let entries = from < upTo ? Array(log[from..<upTo]) : []
        if !entries.isEmpty && !progress.probing.contains(p) {
            progress.next[p] = next + UInt64(entries.count)
            role = .leader(progress)
        }
        send(
            p,
            .append(
                term: term, prevIndex: prev, prevTerm: prevTerm, entries: entries,
                commit: min(commit, prev + UInt64(entries.count)), readSeq: readSeq))
    }

    mutating func handleAppend(from leader: String, prevIndex: LogIndex, prevTerm: Term, entries: [Entry], leaderCommit: LogIndex, readSeq: UInt64) {
        if prevIndex.value < offset {
            // Older than our snapshot: everything up to it is committed here already.
            send(leader, .appendReply(term: term, success: true, index: max(commit, LogIndex(offset)), readSeq: readSeq))
            return
        }
        guard prevIndex <= lastIndex, term(at: prevIndex) == prevTerm else {
            // Log does not contain prevIndex with prevTerm: back the leader up to what we have.
            send(leader, .appendReply(term: term, success: false, index: min(lastIndex, prevIndex - (prevIndex > .zero ? 1 : 0)), readSeq: readSeq))
            return
        }
        // A correct leader never contradicts a committed entry (Raft's Leader Completeness); one
        // that does is not followed, and nothing is truncated.
        guard !entries.contains(where: { e in e.index <= commit && term(at: e.index).map { $0 != e.term } ?? false }) else {
            rejected += 1
            return
        }
        var newEntries: [Entry] = []
        for e in entries where e.index.value > offset {
            if let t = term(at: e.index) {
                if t == e.term { continue }
                // Conflict: drop it and everything after (above commit, checked above).
                let droppedConfig = log[pos(e.index)...].contains { $0.kind == .config }
                log.removeSubrange(pos(e.index)...)
                ready.truncateAfter = e.index - 1
                ready.entries.removeAll { $0.index >= e.index }
                if droppedConfig { recomputeConfig() }
            }
            newEntries.append(e)
        }
        appendLocal(newEntries)
        let lastNew = prevIndex + UInt64(entries.count)
        if leaderCommit > commit {
            setCommit(min(leaderCommit, lastNew, lastIndex))
        }
        send(leader, .appendReply(term: term, success: true, index: lastNew, readSeq: readSeq))
    }

    mutating func handleAppendReply(from p: String, success: Bool, index: LogIndex) {
        guard case .leader(var progress) = role else { return }
        progress.recentlyActive.insert(p)
        if success {
            progress.probing.remove(p)
            if index > progress.match[p] ?? .zero { progress.match[p] = index }
            progress.next[p] = max(progress.next[p] ?? .zero, index + 1)
            role = .leader(progress)
            maybeCommit()
            if (progress.next[p] ?? .zero) <= lastIndex { sendAppend(to: p) }
        } else {
            // Fast back-up: jump to the follower's hint rather than one entry at a time.
            let next = max(LogIndex(1), min((progress.next[p] ?? LogIndex(1)) - 1, index + 1))
            progress.next[p] = next
            progress.probing.insert(p)
            role = .leader(progress)
            sendAppend(to: p)
        }
    }

    /// Commit = the highest index a quorum stores, if it is from the current term (Raft §5.4.2).
    mutating func maybeCommit() {
        guard case .leader(let progress) = role else { return }
        var matches = voterPeers.map { (progress.match[$0] ?? .zero).value } + (voters.contains(id) ? [lastIndex.value] : [])
        guard matches.count >= quorum else { return }
        matches.sort(by: >)
        let candidate = LogIndex(matches[quorum - 1])
        if candidate > commit, term(at: candidate) == term {
            setCommit(candidate)
            for p in peers { sendAppend(to: p) }  // tell followers promptly
        }
    }

    mutating func setCommit(_ c: LogIndex) {
        guard c > commit else { return }
        hardState.commit = c
        ready.hardState = hardState
        // A leader that committed its own removal hands over by stepping down.
        if case .leader = role, !voters.contains(id) { becomeFollower(term: term, leader: nil) }
    }

    mutating func send(_ to: String, _ m: RaftMessage) {
        ready.messages.append(Envelope(from: id, to: to, message: m))
    }

    mutating func takeReady() -> Ready {
        if commit > applied {
            ready.committed = Array(log[pos(applied + 1)...pos(commit)])
            applied = commit
        }
        defer { ready = Ready() }
        return ready
    }
}
