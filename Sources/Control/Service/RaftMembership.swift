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

    func address(of node: String) -> String? { members[node]?.tags[RaftService.addressTag] ?? heardAt[node] }
    public static let addressTag = "raft"
    public static let clusterTag = "cluster"

    /// Voter management (leader, every half second): `VoterPolicy` decides, from the Raft
    /// configuration and gossip's view, the next change; this proposes it.
    func manageVoters(now: NIODeadline) {
        guard case .leader(let progress) = core.role else { return }
        let policy = VoterPolicy(target: settings.voters, grace: settings.deadVoterAfter)
        let nodes = members.mapValues { m in
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

    static func health(_ s: MemberStatus) -> VoterPolicy.Node.Health {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }
}
