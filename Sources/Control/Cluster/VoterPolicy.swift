import Determinism
import Raft

/// The shape every reconciler the leader runs shares: what it observes in, the commands to
/// carry out (through Raft) out; pure and deterministic for the same input, run on the shell's
/// schedule. Voter management is the first; layout planning and VM scheduling plug in here.
public protocol Reconciler: Sendable {
    associatedtype Observed
    associatedtype Command
    func plan(_ observed: Observed) -> [Command]
}

/// Voter management as a pure policy, run by the leader every half second: given the Raft
/// configuration and what gossip says of each node, the one configuration change to make next,
/// if any. In order of priority:
/// 1. remove a voter gossip has reported dead or left for longer than `grace` (never the leader;
///    a left voter waits the grace too, so one restarted after a graceful stop keeps its vote);
/// 2. add as a learner an alive node with a Raft address that belongs to no cluster yet or to this one;
/// 3. promote a caught-up alive learner while there are fewer voters than min(`target`, the
///    healthy nodes, made odd), preferring a zone no voter is in;
/// 4. with every voter healthy: promote a caught-up learner of a zone without a voter while a zone
///    holds two, and retire voters past that number, from the most crowded zone (never the leader);
/// 5. remove a learner dead or left past the grace, then one that turned out to be of another cluster.
/// One change at a time: the next waits until this one is committed.
public struct VoterPolicy: Reconciler {
    /// What gossip says of one node.
    public struct Node: Sendable, Equatable {
        public enum Health: Sendable, Equatable { case alive, suspect, dead, left }
        public var health: Health
        /// When `health` last changed.
        public var since: Instant
        public var zone: String?
        /// It gossips a Raft address (only such nodes can take part).
        public var hasRaftAddress: Bool
        /// The cluster id it gossips, if any.
        public var cluster: String?
        public init(health: Health, since: Instant, zone: String? = nil, hasRaftAddress: Bool = true, cluster: String? = nil) {
            self.health = health; self.since = since; self.zone = zone; self.hasRaftAddress = hasRaftAddress; self.cluster = cluster
        }
    }

    /// Voters wanted (`raft.voters`).
    public var target: Int
    /// How long a voter may be dead or left before it loses its vote.
    public var grace: Span
    public init(target: Int, grace: Span) { self.target = target; self.grace = grace }

    /// The Raft configuration as the leader sees it, and gossip's view of every node.
    public struct Observed: Sendable {
        public var leader: String
        public var voters: Set<String>
        public var learners: Set<String>
        public var nodes: [String: Node]
        /// How far each learner's log matches the leader's.
        public var match: [String: LogIndex]
        public var commit: LogIndex
        public var clusterID: String
        public var now: Instant
        public init(
            leader: String, voters: Set<String>, learners: Set<String>, nodes: [String: Node],
            match: [String: LogIndex], commit: LogIndex, clusterID: String, now: Instant
        ) {
            self.leader = leader; self.voters = voters; self.learners = learners; self.nodes = nodes
            self.match = match; self.commit = commit; self.clusterID = clusterID; self.now = now
        }
    }

    /// The one change to make next, if any (never more than one: the next waits for its commit).
    public func plan(_ o: Observed) -> [ConfigChange] { next(o).map { [$0] } ?? [] }

    func next(_ o: Observed) -> ConfigChange? {
        let (leader, voters, learners, nodes, match, commit, clusterID, now) = (o.leader, o.voters, o.learners, o.nodes, o.match, o.commit, o.clusterID, o.now)
        func gone(_ n: String) -> Bool {
            guard n != leader, let m = nodes[n], m.health == .dead || m.health == .left else { return false }
            return now - m.since >= grace
        }
        func healthy(_ n: String) -> Bool { n == leader || nodes[n]?.health == .alive }
        func ours(_ n: Node) -> Bool { (n.cluster ?? clusterID) == clusterID }
        if let dead = voters.sorted().first(where: gone) { return .remove(dead) }
        if let newcomer = nodes.filter({ name, n in
            n.health == .alive && n.hasRaftAddress && ours(n) && !voters.contains(name) && !learners.contains(name)
        }).keys.sorted().first {
            return .addLearner(newcomer)
        }
        let healthyNodes = voters.union(learners).filter(healthy).count
        let desired = max(1, min(target, healthyNodes % 2 == 0 ? healthyNodes - 1 : healthyNodes))
        let ready = learners.filter { healthy($0) && (match[$0] ?? .zero) >= commit }
        let zones = Set(voters.compactMap { nodes[$0]?.zone })
        func newZone(_ n: String) -> Bool { nodes[n]?.zone.map { !zones.contains($0) } ?? false }
        if voters.count < desired, !ready.isEmpty {
            return .addVoter(ready.sorted { a, b in newZone(a) != newZone(b) ? newZone(a) : a < b }.first!)
        }
        // With every voter healthy, the set is reshaped: a ready learner in a zone no voter is in
        // joins while some zone holds two voters (the next round retires one of those), and a
        // voter past `desired` (after a node was lost, or after that swap) is retired from the
        // zone that holds the most; it comes back as a learner. Adding before retiring keeps the
        // fault tolerance: 5 → 6 voters tolerate 2 failures, as 5 do; 5 → 4 would tolerate 1.
        if voters.allSatisfy(healthy) {
            var perZone: [String: Int] = [:]
            for v in voters { perZone[nodes[v]?.zone ?? "", default: 0] += 1 }
            if voters.count == desired, perZone.values.contains(where: { $0 > 1 }),
                let pick = ready.filter(newZone).sorted().first
            {
                return .addVoter(pick)
            }
            if voters.count > desired,
                let retire = voters.filter({ $0 != leader }).sorted(by: { a, b in
                    let za = perZone[nodes[a]?.zone ?? ""]!, zb = perZone[nodes[b]?.zone ?? ""]!
                    return za != zb ? za > zb : a < b
                }).first
            {
                return .remove(retire)
            }
        }
        if let deadLearner = learners.sorted().first(where: gone) { return .remove(deadLearner) }
        // Taken in before its own cluster id was gossiped.
        if let foreign = learners.sorted().first(where: { nodes[$0].map { !ours($0) } ?? false }) { return .remove(foreign) }
        return nil
    }
}
