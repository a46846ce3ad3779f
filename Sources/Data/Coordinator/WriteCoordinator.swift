import Determinism

/// One PUT (or delete) of one object version as a sans-IO state machine, run by the node that
/// took the S3 request. Two phases, so a failed write leaves nothing visible:
/// 1. every slot's node is sent its shard stream into a temporary file (`open`); each answers
///    `prepared` once its file is fsynced, or fails;
/// 2. once every node has answered (or the stragglers' grace after a quorum ran out) and at
///    least `writeQuorum` prepared, the prepared ones are told to `commit` (rename into place:
///    visible to reads); `writeQuorum` commits acknowledge the write.
/// Too many failures: every node that may hold a temporary file is told to `abort` (delete it),
/// every node that may have committed to `revert` (drop the version) — failed ones too, since a
/// failure may be only a lost answer. What does not arrive is left to the nodes' own cleanup
/// (temporary files no commit reached, versions on fewer nodes than the quorum).
/// A node that missed its shard (failed, or abandoned as a straggler) is named for repair.
public struct WriteCoordinator: Sendable {
    public enum Effect: Equatable, Sendable {
        case open(node: String, shard: Int)
        case commit(node: String)
        case abort(node: String)
        case revert(node: String)
    }

    public enum Outcome: Equatable, Sendable {
        /// Committed on at least the write quorum; `repair` lacked their shard.
        case acknowledged(repair: [String])
        case failed(reason: String)
    }

    enum Phase: Equatable { case streaming, preparing, committing, done }
    enum NodeState: Equatable {
        case open, prepared, committing, committed, abandoned
        /// Failed while open or prepared: may hold a temporary file.
        case lost
        /// Failed while committing: may have committed.
        case lostInCommit
    }

    public let nodes: [String]
    public let writeQuorum: Int
    /// How long stragglers may take to prepare once a quorum has.
    public let grace: Span
    /// How long a node may take to prepare after the body ended, or to commit: past it, it
    /// counts as failed (the shell's connections may notice sooner).
    public let timeout: Span
    public private(set) var outcome: Outcome?
    var phase = Phase.streaming
    var state: [NodeState]
    var quorumAt: Instant?
    var deadline: Instant?

    /// `nodes[i]` holds shard i.
    public init(nodes: [String], writeQuorum: Int, grace: Span, timeout: Span) {
        precondition(writeQuorum >= 1 && writeQuorum <= nodes.count, "write quorum out of range")
        self.nodes = nodes
        self.writeQuorum = writeQuorum
        self.grace = grace
        self.timeout = timeout
        state = Array(repeating: .open, count: nodes.count)
    }

    public func start() -> [Effect] { nodes.enumerated().map { .open(node: $1, shard: $0) } }

    /// The body has been streamed to every node still open.
    public mutating func bodyEnded(now: Instant) -> [Effect] {
        guard phase == .streaming else { return [] }
        phase = .preparing
        deadline = now + timeout
        return step(now)
    }

    public mutating func prepared(_ node: String, now: Instant) -> [Effect] {
        guard let i = nodes.firstIndex(of: node), state[i] == .open else { return [] }
        state[i] = .prepared
        return step(now)
    }

    public mutating func committed(_ node: String, now: Instant) -> [Effect] {
        guard let i = nodes.firstIndex(of: node), state[i] == .committing else { return [] }
        state[i] = .committed
        return step(now)
    }

    /// The node's stream, prepare or commit failed (connection lost, disk error, timeout).
    public mutating func failed(_ node: String, now: Instant) -> [Effect] {
        guard let i = nodes.firstIndex(of: node), [.open, .prepared, .committing].contains(state[i]) else { return [] }
        state[i] = state[i] == .committing ? .lostInCommit : .lost
        return step(now)
    }

    public mutating func tick(now: Instant) -> [Effect] { step(now) }

    func count(_ s: NodeState...) -> Int { state.filter { s.contains($0) }.count }

    mutating func step(_ now: Instant) -> [Effect] {
        switch phase {
        case .streaming, .preparing:
            // Fail fast: not enough nodes left to ever reach the quorum.
            if nodes.count - count(.lost) < writeQuorum { return fail("\(count(.lost)) of \(nodes.count) nodes failed before commit") }
            guard phase == .preparing else { return [] }
            if let d = deadline, now >= d, count(.open) > 0 {
                for i in state.indices where state[i] == .open { state[i] = .lost }
                return step(now)
            }
            if count(.prepared) >= writeQuorum && quorumAt == nil { quorumAt = now }
            let waiting = count(.open)
            guard waiting == 0 || (quorumAt.map { now - $0 >= grace } ?? false) else { return [] }
            var effects: [Effect] = []
            for i in state.indices where state[i] == .open {
                state[i] = .abandoned  // too slow: its temporary file goes, repair writes its shard later
                effects.append(.abort(node: nodes[i]))
            }
            phase = .committing
            deadline = now + timeout
            for i in state.indices where state[i] == .prepared {
                state[i] = .committing
                effects.append(.commit(node: nodes[i]))
            }
            return effects + step(now)
        case .committing:
            if let d = deadline, now >= d { for i in state.indices where state[i] == .committing { state[i] = .lostInCommit } }
            if count(.committed) >= writeQuorum {
                phase = .done
                let repair = state.indices.filter { [.lost, .lostInCommit, .abandoned].contains(state[$0]) }.map { nodes[$0] }
                outcome = .acknowledged(repair: repair)
                return []
            }
            if count(.committed, .committing) < writeQuorum { return fail("commits failed on \(count(.lostInCommit)) of \(nodes.count) nodes") }
            return []
        case .done:
            return []
        }
    }

    /// Undoes the write everywhere it may have left something.
    mutating func fail(_ reason: String) -> [Effect] {
        phase = .done
        outcome = .failed(reason: reason)
        var effects: [Effect] = []
        for i in state.indices {
            switch state[i] {
            case .open, .prepared, .lost: effects.append(.abort(node: nodes[i]))
            case .committing, .committed, .lostInCommit: effects.append(.revert(node: nodes[i]))
            case .abandoned: break  // told to abort already
            }
        }
        return effects
    }
}
