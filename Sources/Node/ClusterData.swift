import Cluster
import Control
import DataPlane
import DataRPC
import Membership
import Placement
import Synchronization

/// What the data plane takes from the rest of the node: the gossip keyring to seal data
/// connections (it rotates), and where keys live (the replicated layout, with each member's
/// data address from its gossip tag). Both views are refreshed from gossip every second.
final class ClusterData: PlacementMap, Sealer {
    static let addressTag = "data"
    let raft: RaftService
    let view: Mutex<(keyring: Keyring, addresses: [String: String])>

    init(raft: RaftService, keyring: Keyring, name: String, address: String) {
        self.raft = raft
        view = Mutex((keyring, [name: address]))
    }

    /// Follows gossip until cancelled.
    func follow(_ gossip: GossipService) async {
        while !Task.isCancelled {
            if let keys = try? await gossip.keys(), let members = try? await gossip.members() {
                var addresses: [String: String] = [:]
                for m in members { if let a = m.tags[Self.addressTag] { addresses[m.name] = a } }
                view.withLock { v in
                    v.keyring = keys
                    v.addresses.merge(addresses) { _, new in new }
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func seal(_ plaintext: [UInt8]) -> [UInt8] { view.withLock { $0.keyring }.seal(plaintext) }
    func open(_ sealed: [UInt8]) -> [UInt8]? { view.withLock { $0.keyring }.open(sealed) }

    func placement(bucket: String, key: String) -> Placed? {
        let layout = raft.read { $0.layout }
        guard layout.members.count >= 2 else { return nil }
        let p = Placement.partition(bucket: bucket, key: key, partitions: layout.partitions)
        let addresses = view.withLock { $0.addresses }
        return Placed(k: layout.scheme.k, m: layout.scheme.m, nodes: layout.holders(of: p).map { PlacedNode(name: $0, address: addresses[$0]) })
    }

    func everyNode() -> [PlacedNode] {
        let names = raft.read { $0.layout.members.map(\.name) }
        let addresses = view.withLock { $0.addresses }
        return names.map { PlacedNode(name: $0, address: addresses[$0]) }
    }
}
