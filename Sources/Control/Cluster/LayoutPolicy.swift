import Determinism

/// Keeps the layout in step with membership, as a pure policy the leader runs every second:
/// - an alive node of the Raft group (voter or learner, so known to be of this cluster) that the
///   layout lacks joins it, with its gossiped zone and weight (`zone`, `weight` tags; weight 100
///   when none is given);
/// - a member gossip has reported dead or left for `removeAfter` leaves it (never the leader),
///   and its partitions go to others, where repair rebuilds its shards;
/// - an alive member whose gossiped zone changed takes the new zone.
/// Weights an operator set are never touched (that is `stacks layout set-weight|drain`), and a
/// drained member (weight 0) stays in the layout until it dies. The plan is at most one new
/// version taking every change at once; the next waits until it is committed.
public struct LayoutPolicy: Reconciler {
    public struct Node: Sendable, Equatable {
        public var health: VoterPolicy.Node.Health
        /// When `health` last changed.
        public var since: Instant
        public var zone: String?
        public var weight: UInt32?
        /// In the Raft configuration (voter or learner).
        public var inGroup: Bool
        /// The newest layout version under which a whole pass of its repairer found no shard
        /// there placed elsewhere (its gossiped `DataReport`).
        public var settled: UInt64
        public init(
            health: VoterPolicy.Node.Health, since: Instant, zone: String? = nil, weight: UInt32? = nil, inGroup: Bool = true, settled: UInt64 = 0
        ) {
            self.health = health; self.since = since; self.zone = zone; self.weight = weight; self.inGroup = inGroup; self.settled = settled
        }
    }

    public struct Observed: Sendable {
        public var leader: String
        public var layout: Layout
        public var nodes: [String: Node]
        public var now: Instant
        public init(leader: String, layout: Layout, nodes: [String: Node], now: Instant) {
            self.leader = leader; self.layout = layout; self.nodes = nodes; self.now = now
        }
    }

    /// `data.remove_after`.
    public var removeAfter: Span
    public init(removeAfter: Span) { self.removeAfter = removeAfter }

    public func plan(_ o: Observed) -> [Layout] {
        var members = o.layout.members
        members.removeAll { m in
            guard m.name != o.leader, let n = o.nodes[m.name], n.health == .dead || n.health == .left else { return false }
            return o.now - n.since >= removeAfter
        }
        for i in members.indices {
            if let n = o.nodes[members[i].name], n.health == .alive, let zone = n.zone, zone != members[i].zone { members[i].zone = zone }
        }
        let known = Set(members.map(\.name))
        for (name, n) in o.nodes.sorted(by: { $0.key < $1.key })
        where !known.contains(name) && (name == o.leader || (n.health == .alive && n.inGroup)) {
            members.append(Layout.Member(name: name, zone: n.zone ?? "", weight: min(n.weight ?? Layout.defaultWeight, Layout.maxWeight)))
        }
        members.sort { $0.name < $1.name }
        guard members != o.layout.members || o.layout.version == 0 else { return [] }
        guard let next = try? o.layout.next(members: members, requested: o.layout.requested) else { return [] }
        return [next]
    }

    /// The version whose migration is over, once every alive node of the current layout and of
    /// the earlier ones still consulted has settled under it: no shard left on a node its
    /// layout does not place there, so earlier versions need not be consulted any more. Nodes
    /// dead or unknown to gossip are not waited for (what they held is rebuilt from parity, and
    /// one that comes back drops what it holds misplaced once the new node has it).
    public func finished(_ o: Observed, migrating: [Layout]) -> UInt64? {
        guard !migrating.isEmpty, o.layout.version > 0 else { return nil }
        var names = Set(o.layout.members.map(\.name))
        for l in migrating { names.formUnion(l.members.map(\.name)) }
        for n in names {
            guard let node = o.nodes[n], node.health == .alive || node.health == .suspect else { continue }
            guard node.settled >= o.layout.version else { return nil }
        }
        return o.layout.version
    }
}
