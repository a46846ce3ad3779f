import Cluster
import Gossip
import Logging
import Membership
import NIOCore
import Raft

/// What the Raft shell takes from gossip: members, addresses, and the leader's voter management.
extension RaftService {
    // MARK: Membership from gossip

    func refreshMembership() {
        gossip.membersAndKeyring().hop(to: loop).whenSuccess { members, keyring in
            self.keyring = keyring
            var byName: [String: Member] = [:]
            for m in members { byName[m.name] = m }
            self.members = byName
        }
    }

    /// The members the leader manages: in a cluster that admits nodes with tokens, only those it
    /// admitted (a process holding only the gossip key is seen in gossip but gets no share), and
    /// a removed node as one that left long ago, so it loses its seat and its share at once.
    var admittedMembers: [String: Member] {
        let admitted = read { $0.nodes }
        guard !admitted.isEmpty else { return members }
        var out: [String: Member] = [:]
        for (n, m) in members {
            guard let record = admitted[n] else { continue }
            var m = m
            if record.removedMs != nil { (m.status, m.since) = (.left, Instant(nanoseconds: .min / 4)) }
            out[n] = m
        }
        return out
    }

    func address(of node: String) -> String? { members[node]?.tags[RaftService.addressTag] ?? heardAt[node] }
    public static let addressTag = "raft"
    public static let clusterTag = "cluster"

    /// Voter management (leader, every half second): `VoterPolicy` decides, from the Raft
    /// configuration and gossip's view, the next change; this proposes it.
    func manageVoters(now: NIODeadline) {
        guard case .leader(let progress) = core.role else { return }
        let policy = VoterPolicy(target: settings.voters, grace: settings.deadVoterAfter)
        let nodes = admittedMembers.mapValues { m in
            VoterPolicy.Node(
                health: Self.health(m.status), since: m.since, zone: m.tags["zone"],
                hasRaftAddress: m.tags[Self.addressTag] != nil, cluster: m.tags[Self.clusterTag])
        }
        let observed = VoterPolicy.Observed(
            leader: name, voters: core.voters, learners: core.learners, nodes: nodes, match: progress.match,
            commit: core.commit, clusterID: clusterID, now: Instant(now))
        guard let change = policy.plan(observed).first, let (_, ready) = core.proposeConfigChange(change) else { return }
        logger.info("voter management", metadata: ["change": "\(change)"])
        handle(ready)
    }

    /// Layout management (leader, every second): `LayoutPolicy` decides, from the layout and
    /// gossip's view, the next version; this proposes it, one at a time.
    func manageLayout(now: NIODeadline) {
        guard layoutProposed == nil else { return }
        let group = core.voters.union(core.learners)
        var nodes = admittedMembers.mapValues { m in
            LayoutPolicy.Node(
                health: Self.health(m.status), since: m.since, zone: m.tags["zone"],
                weight: m.tags["weight"].flatMap { UInt32($0) }, inGroup: group.contains(m.name),
                settled: DataReport(tag: m.tags[DataReport.tag])?.settledVersion ?? 0)
        }
        if nodes[name] == nil { nodes[name] = LayoutPolicy.Node(health: .alive, since: Instant(now)) }
        let policy = LayoutPolicy(removeAfter: settings.removeAfter)
        let (layout, migrating) = read { ($0.layout, $0.migrating) }
        let observed = LayoutPolicy.Observed(leader: name, layout: layout, nodes: nodes, now: Instant(now))
        if let next = policy.plan(observed).first {
            layoutProposed = next.version
            logger.info(
                "layout management", metadata: ["version": "\(next.version)", "scheme": "\(next.scheme)", "nodes": "\(next.members.map(\.name))"])
            propose(.applyLayout(next, consumed: LayoutStage()), what: "layout version \(next.version)")
        } else if let done = policy.finished(observed, migrating: migrating) {
            layoutProposed = done
            logger.info("data moved for layout version \(done); earlier versions no longer consulted")
            propose(.finishMigration(version: done), what: "end of migration to layout version \(done)")
        }
    }

    /// Submits a layout command; the next waits until this one is answered.
    private func propose(_ c: Command, what: String) {
        Task {
            let outcome = try? await self.submitOwn(c)
            if outcome != .ok { self.logger.info("\(what) not applied: \(outcome.map { "\($0)" } ?? "no answer")") }
            self.loop.execute { self.layoutProposed = nil }
        }
    }

    static func health(_ s: MemberStatus) -> VoterPolicy.Node.Health {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }
}
