import Cluster
import Gossip
import Logging
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

    /// Voter management (leader, every half second): replace voters gossip has reported dead or
    /// left for longer than `deadVoterAfter`, add new members as learners, promote caught-up healthy
    /// learners (distinct zones first) up to min(nodes, `voters`), one change at a time.
    func manageVoters(now: NIODeadline) {
        guard case .leader(let progress) = core.role else { return }
        let nowInstant = Instant(nanoseconds: Int64(now.uptimeNanoseconds))
        func gone(_ n: String) -> Bool {
            guard n != name, let m = members[n], m.status == .dead || m.status == .left else { return false }
            // A left node waits out the grace too: a voter restarted after a graceful stop comes
            // back (refuting its "left") and keeps its vote.
            return nowInstant.nanoseconds - m.since.nanoseconds >= settings.deadVoterAfter.nanoseconds
        }
        func healthy(_ n: String) -> Bool { n == name || members[n].map { $0.status == .alive } ?? false }
        let voters = core.voters, learners = core.learners
        var change: ConfigChange?
        if let dead = voters.sorted().first(where: gone) {
            change = .remove(dead)
        } else if let newcomer = members.values.filter({
            // Only nodes of no cluster yet (or of this one): another cluster sharing the gossip key is left alone.
            $0.status == .alive && $0.tags[Self.addressTag] != nil && ($0.tags[Self.clusterTag] ?? clusterID) == clusterID
                && !voters.contains($0.name) && !learners.contains($0.name)
        }).map(\.name).sorted().first {
            change = .addLearner(newcomer)
        } else {
            let nodes = voters.union(learners).filter(healthy).count
            let desired = max(1, min(settings.voters, nodes % 2 == 0 ? nodes - 1 : nodes))
            let ready = learners.filter { healthy($0) && (progress.match[$0] ?? .zero) >= core.commit }
            if voters.count < desired, !ready.isEmpty {
                let zones = Set(voters.compactMap { members[$0]?.tags["zone"] })
                let pick = ready.sorted { a, b in
                    let za = members[a]?.tags["zone"].map { !zones.contains($0) } ?? false
                    let zb = members[b]?.tags["zone"].map { !zones.contains($0) } ?? false
                    return za != zb ? za : a < b
                }.first!
                change = .addVoter(pick)
            } else if let deadLearner = learners.sorted().first(where: gone) {
                change = .remove(deadLearner)
            } else if let foreign = learners.sorted().first(where: { (members[$0]?.tags[Self.clusterTag] ?? clusterID) != clusterID }) {
                change = .remove(foreign)  // taken in before its own cluster id was gossiped
            }
        }
        guard let change, let (_, ready) = core.proposeConfigChange(change) else { return }
        logger.info("voter management", metadata: ["change": "\(change)"])
        handle(ready)
    }
}
