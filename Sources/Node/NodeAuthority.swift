import Cluster
import Control
import Security
import Synchronization

/// This node's identity for its transports and the rule for whom they let in: a peer whose
/// credential verified is admitted only if the cluster state holds its name with that key and
/// `stacks node remove` has not removed it. A replica that holds no node record yet (it just
/// joined) admits the members its join grant named instead, the leader among them; a peer the
/// replica does not know yet (it joined a moment ago) is refused and connects again once the
/// replica has caught up. So a credential signed with the cluster key for a name the cluster
/// never admitted (by a removed node that kept the key) opens nothing.
final class NodeAuthority: PeerAuthority {
    let state: Mutex<NodeIdentity>
    let raft = Mutex<RaftService?>(nil)

    init(_ identity: NodeIdentity) { state = Mutex(identity) }

    var identity: NodeHandshake.Identity? {
        state.withLock { i in i.proof.map { NodeHandshake.Identity(clusterKey: $0.clusterKey, credential: $0.credential, nodeKey: $0.nodeKey) } }
    }

    func admit(_ credential: NodeCredential) -> String? {
        guard let raft = raft.withLock({ $0 }) else { return "this node is starting" }
        let granted = state.withLock { $0.grantedMembers }
        return raft.read { s in
            // A replica with no node record yet knows the members from its join grant.
            let known = s.nodes.isEmpty ? granted[credential.node].map { ($0, false) } : s.nodes[credential.node].map { ($0.publicKey, $0.removedMs != nil) }
            guard let (key, removed) = known else { return "\(credential.node) is no member of the cluster (as this replica knows it)" }
            if key != credential.publicKey { return "the cluster admitted another key under the name \(credential.node)" }
            return removed ? "removed from the cluster (stacks node remove)" : nil
        }
    }
}
