import Cluster
import Control
import Security
import Synchronization

/// This node's identity for its transports and the rule for whom they let in: a peer whose
/// credential verified is admitted unless the cluster state gave its name another key or
/// `stacks node remove` removed it.
final class NodeAuthority: PeerAuthority {
    let state: Mutex<NodeIdentity>
    let raft = Mutex<RaftService?>(nil)

    init(_ identity: NodeIdentity) { state = Mutex(identity) }

    var identity: NodeHandshake.Identity? {
        state.withLock { i in i.proof.map { NodeHandshake.Identity(clusterKey: $0.clusterKey, credential: $0.credential, nodeKey: $0.nodeKey) } }
    }

    func admit(_ credential: NodeCredential) -> String? {
        guard let raft = raft.withLock({ $0 }) else { return nil }
        return raft.read { s in
            guard let n = s.nodes[credential.node] else { return nil }
            if n.publicKey != credential.publicKey { return "the cluster admitted another key under the name \(credential.node)" }
            if n.removedMs != nil { return "removed from the cluster (stacks node remove)" }
            return nil
        }
    }
}
