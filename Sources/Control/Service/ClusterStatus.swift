import Cluster
import Gossip
import Membership
import NIOCore
import Raft

/// What `stacks status` shows: this node's view of the Raft group joined with gossip health.
/// JSON field names are the contract.
public struct ClusterStatus: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        /// leader, voter, learner, or none (known to gossip, not yet in the Raft group).
        public var raftRole: String
        /// Gossip status: alive, suspect, dead, left, or unknown.
        public var status: String
        public var raftAddress: String?
        /// Milliseconds since this node last heard from it over Raft (nil: never).
        public var lastContactMs: Int?
        /// Highest log index known to be stored there (leader's view only).
        public var matchIndex: UInt64?
        enum CodingKeys: String, CodingKey {
            case name, status
            case raftRole = "raft_role", raftAddress = "raft_address", lastContactMs = "last_contact_ms", matchIndex = "match_index"
        }
    }
    public var selfName: String
    public var clusterID: String
    public var leader: String?
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var voters: Int
    public var quorum: Int
    public var healthy: Bool
    /// Why the cluster is not healthy (empty when it is).
    public var problems: [String]
    public var nodes: [Node]
    /// Where data lives (`stacks layout show` has the details); nil before the first version.
    public var layout: Layout?

    public struct Layout: Codable, Sendable, Equatable {
        public var version: UInt64
        public var scheme: String
        public var members: Int
        /// Earlier versions still consulted while data moves.
        public var migrating: Int
    }

    enum CodingKeys: String, CodingKey {
        case selfName = "self", clusterID = "cluster_id", leader, term, commitIndex = "commit_index", appliedIndex = "applied_index"
        case voters, quorum, healthy, problems, nodes, layout
    }

    /// Written by hand so that `leader` is always present (null while there is none).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(selfName, forKey: .selfName)
        try c.encode(clusterID, forKey: .clusterID)
        try c.encode(leader, forKey: .leader)
        try c.encode(term, forKey: .term)
        try c.encode(commitIndex, forKey: .commitIndex)
        try c.encode(appliedIndex, forKey: .appliedIndex)
        try c.encode(voters, forKey: .voters)
        try c.encode(quorum, forKey: .quorum)
        try c.encode(healthy, forKey: .healthy)
        try c.encode(problems, forKey: .problems)
        try c.encode(nodes, forKey: .nodes)
        try c.encodeIfPresent(layout, forKey: .layout)
    }
}

extension RaftService {
    public func status() async throws -> ClusterStatus {
        try await loop.submit { self.makeStatus(now: .now()) }.get()
    }

    func makeStatus(now: NIODeadline) -> ClusterStatus {
        let voters = core.voters, learners = core.learners, leader = core.leader
        var progress: RaftNode.Progress?
        if case .leader(let p) = core.role { progress = p }
        var names = voters.union(learners)
        for (n, m) in members where m.tags[Self.addressTag] != nil { names.insert(n) }
        names.insert(name)
        func gossipStatus(_ n: String) -> String { n == name ? "alive" : members[n]?.status.description ?? "unknown" }
        let nodes = names.sorted().map { n in
            ClusterStatus.Node(
                name: n,
                raftRole: n == leader && voters.contains(n) ? "leader" : voters.contains(n) ? "voter" : learners.contains(n) ? "learner" : "none",
                status: gossipStatus(n),
                raftAddress: n == name ? listen.description : address(of: n),
                lastContactMs: n == name ? 0 : lastHeard[n].map { Int((now - $0).nanoseconds / 1_000_000) },
                matchIndex: n == name ? core.lastIndex.value : progress?.match[n]?.value)
        }
        let quorum = voters.count / 2 + 1
        // Reachable: a leader hears every voter within an election timeout; a follower hears
        // only the leader, so for the others it goes by gossip.
        let recent = settings.tick * Int64(settings.raft.electionTicks)
        func reachable(_ n: String) -> Bool {
            if n == name { return true }
            if let t = lastHeard[n], now - t < recent { return true }
            return progress == nil && n != leader && ["alive", "suspect"].contains(gossipStatus(n))
        }
        let alive = voters.filter(reachable).count
        var problems: [String] = []
        if leader == nil { problems.append("no leader: an election is under way or a quorum of voters is unreachable") }
        if let l = leader, !reachable(l) { problems.append("no contact with leader \(l) for over \(recent.nanoseconds / 1_000_000) ms") }
        if alive < quorum {
            problems.append("quorum lost: \(alive) of \(voters.count) voters alive, \(quorum) needed")
        } else if voters.count >= 3 && alive == quorum {
            problems.append("quorum at risk: \(alive) of \(voters.count) voters alive; one more failure stops writes")
        }
        if voters.isEmpty { problems.append("this node has not been added to a cluster yet") }
        let layout = read { s in
            s.layout.version == 0
                ? nil
                : ClusterStatus.Layout(
                    version: s.layout.version, scheme: s.layout.scheme.description, members: s.layout.members.count, migrating: s.migrating.count)
        }
        return ClusterStatus(
            selfName: name, clusterID: read { $0.clusterID }, leader: leader, term: core.term.value,
            commitIndex: core.commit.value, appliedIndex: core.applied.value,
            voters: voters.count, quorum: quorum, healthy: problems.isEmpty, problems: problems, nodes: nodes, layout: layout)
    }
}
