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
        /// Its data connection's address: the SEED_ADDR a new node passes to `stacks join`.
        public var address: String?
        /// Milliseconds since this node last heard from it over Raft (nil: never).
        public var lastContactMs: Int?
        /// Highest log index known to be stored there (leader's view only).
        public var matchIndex: UInt64?
        /// Bytes of shards it holds and bytes free on its data file system (its repairer's last
        /// pass; nil before one is heard of).
        public var usedBytes: UInt64?
        public var freeBytes: UInt64?
        /// Its scrubber: bytes checked in the pass under way, of that pass's total, and when a
        /// whole pass last finished (Unix seconds; nil: not yet).
        public var scrubbedBytes: UInt64?
        public var scrubTotalBytes: UInt64?
        public var lastFullScrubS: UInt64?
        enum CodingKeys: String, CodingKey {
            case name, status, address
            case raftRole = "raft_role", raftAddress = "raft_address", lastContactMs = "last_contact_ms", matchIndex = "match_index"
            case usedBytes = "used_bytes", freeBytes = "free_bytes"
            case scrubbedBytes = "scrubbed_bytes", scrubTotalBytes = "scrub_total_bytes", lastFullScrubS = "last_full_scrub_s"
        }
    }
    /// The gossip tag that carries a node's data address.
    public static let dataAddressTag = "data"

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
    /// Objects across the alive nodes, as each node's repairer last found them; nil while no
    /// node has reported.
    public var data: Data?

    public struct Data: Codable, Sendable, Equatable {
        public var objects: UInt64
        /// Missing at least one shard.
        public var degraded: UInt64
        /// With no shard to spare, or that could not be checked.
        public var atRisk: UInt64
        public var repairing: UInt64
        public var usedBytes: UInt64
        public var freeBytes: UInt64
        /// While a layout change moves data: nil once nothing is left to move.
        public var rebalance: Rebalance?
        enum CodingKeys: String, CodingKey {
            case objects, degraded, repairing, rebalance
            case atRisk = "at_risk", usedBytes = "used_bytes", freeBytes = "free_bytes"
        }
    }

    public struct Rebalance: Codable, Sendable, Equatable {
        /// Partitions whose nodes differ between the current layout and the earlier ones consulted.
        public var partitionsChanged: Int
        public var partitions: Int
        /// Keys and bytes still on nodes the layout no longer places them on.
        public var keysLeft: UInt64
        public var bytesLeft: UInt64
        public var bytesMoved: UInt64
        public var bytesPerSecond: UInt64
        /// Seconds left at the current rate (nil while nothing moves yet).
        public var etaSeconds: UInt64?
        enum CodingKeys: String, CodingKey {
            case partitions
            case partitionsChanged = "partitions_changed", keysLeft = "keys_left", bytesLeft = "bytes_left", bytesMoved = "bytes_moved"
            case bytesPerSecond = "bytes_per_second", etaSeconds = "eta_seconds"
        }
    }

    public struct Layout: Codable, Sendable, Equatable {
        public var version: UInt64
        public var scheme: String
        public var members: Int
        /// Earlier versions still consulted while data moves.
        public var migrating: Int
    }

    enum CodingKeys: String, CodingKey {
        case selfName = "self", clusterID = "cluster_id", leader, term, commitIndex = "commit_index", appliedIndex = "applied_index"
        case voters, quorum, healthy, problems, nodes, layout, data
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
        try c.encodeIfPresent(data, forKey: .data)
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
        func report(_ n: String) -> DataReport? { DataReport(tag: members[n]?.tags[DataReport.tag]) }
        let nodes = names.sorted().map { n in
            ClusterStatus.Node(
                name: n,
                raftRole: n == leader && voters.contains(n) ? "leader" : voters.contains(n) ? "voter" : learners.contains(n) ? "learner" : "none",
                status: gossipStatus(n),
                raftAddress: n == name ? listen.description : address(of: n),
                address: members[n]?.tags[ClusterStatus.dataAddressTag],
                lastContactMs: n == name ? 0 : lastHeard[n].map { Int((now - $0).nanoseconds / 1_000_000) },
                matchIndex: n == name ? core.lastIndex.value : progress?.match[n]?.value,
                usedBytes: report(n)?.usedBytes, freeBytes: report(n)?.freeBytes,
                scrubbedBytes: report(n)?.scrubbedBytes, scrubTotalBytes: report(n)?.scrubTotalBytes,
                lastFullScrubS: report(n).flatMap { $0.lastFullScrubS == 0 ? nil : $0.lastFullScrubS })
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
        let data = dataStatus(reports: names.filter { ["alive", "suspect"].contains(gossipStatus($0)) }.compactMap(report))
        if let d = data {
            if d.atRisk > 0 { problems.append("\(d.atRisk) object\(d.atRisk == 1 ? "" : "s") at risk: no shard to spare, or not readable to be checked") }
            if d.degraded > d.atRisk { problems.append("\(d.degraded - d.atRisk) object\(d.degraded - d.atRisk == 1 ? "" : "s") degraded: missing shards") }
        }
        return ClusterStatus(
            selfName: name, clusterID: read { $0.clusterID }, leader: leader, term: core.term.value,
            commitIndex: core.commit.value, appliedIndex: core.applied.value,
            voters: voters.count, quorum: quorum, healthy: problems.isEmpty, problems: problems, nodes: nodes, layout: layout, data: data)
    }

    /// The alive nodes' reports summed, with rebalance progress while earlier layouts are consulted.
    func dataStatus(reports: [DataReport]) -> ClusterStatus.Data? {
        guard !reports.isEmpty else { return nil }
        var d = ClusterStatus.Data(objects: 0, degraded: 0, atRisk: 0, repairing: 0, usedBytes: 0, freeBytes: 0)
        var left: UInt64 = 0, leftBytes: UInt64 = 0, moved: UInt64 = 0, rate: UInt64 = 0
        for r in reports {
            d.objects &+= r.objects; d.degraded &+= r.degraded; d.atRisk &+= r.atRisk; d.repairing &+= r.repairing
            d.usedBytes &+= r.usedBytes; d.freeBytes &+= r.freeBytes
            left &+= r.movingKeys; leftBytes &+= r.movingBytes; moved &+= r.movedBytes; rate &+= r.moveRate
        }
        let (layout, migrating) = read { ($0.layout, $0.migrating) }
        guard !migrating.isEmpty else { return d }
        let changed = (0..<layout.partitions).filter { p in migrating.contains { $0.holders(of: p) != layout.holders(of: p) } }.count
        d.rebalance = ClusterStatus.Rebalance(
            partitionsChanged: changed, partitions: layout.partitions, keysLeft: left, bytesLeft: leftBytes, bytesMoved: moved,
            bytesPerSecond: rate, etaSeconds: rate > 0 ? leftBytes / rate : nil)
        return d
    }
}
