@_exported import Determinism

/// A Raft term. Terms only grow; a message from a higher term demotes whoever receives it.
public struct Term: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (a: Term, b: Term) -> Bool { a.value < b.value }
    /// The highest term a message may carry: a node's own term only grows by one per
    /// election, so honest terms never come near it, and `next` cannot overflow.
    public static let limit = Term(1 << 62)
    public var next: Term { Term(value + 1) }
    public var description: String { "\(value)" }
}

/// A position in the replicated log; the first entry is at index 1, index 0 is "before the log".
public struct LogIndex: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (a: LogIndex, b: LogIndex) -> Bool { a.value < b.value }
    public static func + (a: LogIndex, n: UInt64) -> LogIndex { LogIndex(a.value + n) }
    public static func - (a: LogIndex, n: UInt64) -> LogIndex { LogIndex(a.value - n) }
    public static let zero = LogIndex(0)
    /// The highest index a message may name (a peer's `index + 1` must not overflow).
    public static let limit = LogIndex(1 << 62)
    public var description: String { "\(value)" }
}

/// One replicated command. An empty `data` is the no-op a new leader appends to commit
/// earlier terms' entries (Raft §5.4.2).
public struct Entry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case normal = 0, config = 1 }
    public var term: Term
    public var index: LogIndex
    public var kind: Kind
    public var data: [UInt8]
    public init(term: Term, index: LogIndex, kind: Kind = .normal, data: [UInt8]) {
        self.term = term; self.index = index; self.kind = kind; self.data = data
    }
}

/// One server at a time (Raft thesis §4.1): each change takes effect when its entry is appended,
/// and a leader starts one only after the previous one committed and after its own term did.
/// Learners receive the log but neither vote nor count toward quorums.
public enum ConfigChange: Equatable, Sendable {
    case addLearner(String)
    /// Adds a voter, or promotes a learner.
    case addVoter(String)
    case remove(String)

    public var encoded: [UInt8] {
        switch self {
        case .addLearner(let n): [1] + Array(n.utf8)
        case .addVoter(let n): [2] + Array(n.utf8)
        case .remove(let n): [3] + Array(n.utf8)
        }
    }

    public init?(decoding b: [UInt8]) {
        guard let op = b.first, let name = String(validating: b.dropFirst(), as: UTF8.self), !name.isEmpty else { return nil }
        switch op {
        case 1: self = .addLearner(name)
        case 2: self = .addVoter(name)
        case 3: self = .remove(name)
        default: return nil
        }
    }

    func apply(voters: inout Set<String>, learners: inout Set<String>) {
        switch self {
        case .addLearner(let n): if !voters.contains(n) { learners.insert(n) }
        case .addVoter(let n): voters.insert(n); learners.remove(n)
        case .remove(let n): voters.remove(n); learners.remove(n)
        }
    }
}

/// What must survive a crash, written before any message that depends on it is sent.
public struct HardState: Equatable, Sendable {
    public var term = Term(0)
    public var vote: String? = nil
    public var commit = LogIndex.zero
    public init(term: Term = Term(0), vote: String? = nil, commit: LogIndex = .zero) {
        self.term = term; self.vote = vote; self.commit = commit
    }
}

/// Raft messages (Ongaro & Ousterhout 2014, with pre-vote from Ongaro's thesis §9.6).
public enum RaftMessage: Equatable, Sendable {
    /// "Would you vote for me at `term`?" — asked before disturbing anyone's term.
    case preVote(term: Term, lastIndex: LogIndex, lastTerm: Term)
    case preVoteReply(term: Term, granted: Bool)
    /// `transfer`: the old leader asked for this election (leadership transfer), so voters set
    /// aside the check-quorum lease.
    case vote(term: Term, lastIndex: LogIndex, lastTerm: Term, transfer: Bool)
    case voteReply(term: Term, granted: Bool)
    /// `readSeq` is the leader's latest ReadIndex round; the reply echoes it (Raft thesis §6.4).
    case append(term: Term, prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex, readSeq: UInt64)
    /// On success `index` is the follower's last matching index; on rejection, a hint where the
    /// leader should back up to (the follower's last index).
    case appendReply(term: Term, success: Bool, index: LogIndex, readSeq: UInt64)
    /// Leadership transfer: "campaign now" from the leader to an up-to-date follower (thesis §3.10).
    case timeoutNow(term: Term)
    /// InstallSnapshot (Raft §7), streamed in chunks; every chunk repeats the metadata.
    case installSnapshot(term: Term, meta: Snapshot, offset: Int, done: Bool)
    /// `offset`: bytes the follower holds of that snapshot (where the next chunk starts).
    case installSnapshotReply(term: Term, index: LogIndex, offset: Int, done: Bool)

    public var term: Term {
        switch self {
        case .preVote(let t, _, _), .preVoteReply(let t, _), .vote(let t, _, _, _), .voteReply(let t, _), .timeoutNow(let t),
            .installSnapshot(let t, _, _, _), .installSnapshotReply(let t, _, _, _),
            .append(let t, _, _, _, _, _), .appendReply(let t, _, _, _):
            t
        }
    }
}

/// The state machine as of `index`, with the configuration in force there; it replaces every
/// log entry up to `index`.
public struct Snapshot: Equatable, Sendable {
    public var index: LogIndex
    public var term: Term
    public var voters: Set<String>
    public var learners: Set<String>
    public var data: [UInt8]
    /// The largest snapshot a node accepts (the cluster state is held in memory whole).
    public static let maxBytes = 1 << 32
    public init(index: LogIndex, term: Term, voters: Set<String>, learners: Set<String>, data: [UInt8]) {
        self.index = index; self.term = term; self.voters = voters; self.learners = learners; self.data = data
    }
}

/// A read the leader confirmed it could serve linearizably at `index`.
public struct ReadState: Equatable, Sendable {
    public var id: UInt64
    public var index: LogIndex
}

public struct Envelope: Equatable, Sendable {
    public var from: String
    public var to: String
    public var message: RaftMessage
    public init(from: String, to: String, message: RaftMessage) { self.from = from; self.to = to; self.message = message }
}

/// What the shell must do after each input, in this order: persist `hardState` and
/// `entries` (truncating the stored log after `truncateAfter` first, when set), then send
/// `messages`, then apply `committed` to the state machine.
public struct Ready: Equatable, Sendable {
    public var hardState: HardState?
    public var truncateAfter: LogIndex?
    public var entries: [Entry] = []
    public var messages: [Envelope] = []
    public var committed: [Entry] = []
    /// A snapshot received from the leader: persist it (dropping the log it covers) and restore
    /// the state machine from it before applying `committed`.
    public var snapshot: Snapshot?
    /// Linearizable reads confirmed by a quorum: serve read `id` once `index` is applied.
    public var readStates: [ReadState] = []
    public init() {}
    public var isEmpty: Bool {
        hardState == nil && truncateAfter == nil && entries.isEmpty && messages.isEmpty && committed.isEmpty
            && readStates.isEmpty && snapshot == nil
    }
}

public struct RaftSettings: Sendable, Equatable {
    /// Ticks between leader heartbeats.
    public var heartbeatTicks = 1
    /// Election timeout is drawn from [electionTicks, 2·electionTicks) after each reset.
    public var electionTicks = 10
    /// Bound on entries per append message.
    public var maxEntriesPerAppend = 64
    /// Bound on entry bytes per append message (one larger entry still goes alone).
    public var maxBytesPerAppend = 1 << 20
    /// Bound on bytes per InstallSnapshot chunk.
    public var snapshotChunkBytes = 64 << 10
    public init() {}
}
