import Cluster
import Control
import DataPlane
import DataRPC
import Files
import Membership
import Placement
import Synchronization

/// What the data plane takes from the rest of the node: the gossip keyring to seal data
/// connections (it rotates), and where keys live (the replicated layout, with each member's
/// data address from its gossip tag), refreshed from gossip every second.
///
/// Kept in `DATA_DIR/data-peers` (the addresses, and whether objects spread): a restarted node
/// reaches its peers before gossip has told it anything, and never falls back to keeping
/// objects to itself while its replica of the layout is still loading.
final class ClusterData: PlacementMap, Sealer {
    static let addressTag = ClusterStatus.dataAddressTag
    let raft: RaftService
    let path: String
    let view: Mutex<(keyring: Keyring, addresses: [String: String], spread: Bool)>

    init(raft: RaftService, keyring: Keyring, name: String, address: String, path: String) {
        self.raft = raft
        self.path = path
        var addresses: [String: String] = [:], spread = false
        if let text = try? Files.read(path, limit: 1 << 20) {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: " ")
                if f == ["spread"] { spread = true }
                if f.count == 2 { addresses[String(f[0])] = String(f[1]) }
            }
        }
        addresses[name] = address
        view = Mutex((keyring, addresses, spread))
    }

    func save() {
        let (addresses, spread) = view.withLock { ($0.addresses, $0.spread) }
        let text = (spread ? "spread\n" : "") + addresses.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
        try? Files.writeAtomically(Array(text.utf8), to: path)
    }

    /// Follows gossip until cancelled: each second, and every 100 ms while the layout is not
    /// known or names a node with no address yet (a node that just joined learns both at once).
    func follow(_ gossip: GossipService) async {
        while !Task.isCancelled {
            if let keys = try? await gossip.keys(), let members = try? await gossip.members() {
                var addresses: [String: String] = [:]
                for m in members { if let a = m.tags[Self.addressTag] { addresses[m.name] = a } }
                let changed = view.withLock { v in
                    v.keyring = keys
                    let before = v.addresses
                    v.addresses.merge(addresses) { _, new in new }
                    return before != v.addresses
                }
                if changed { save() }
            }
            let nodes = everyNode()
            let unknown = nodes.isEmpty || nodes.contains { $0.address == nil }
            try? await Task.sleep(for: unknown ? .milliseconds(100) : .seconds(1))
        }
    }

    /// Whether a member's data address (as gossip and `data-peers` know it) is on `host`: the
    /// data server keeps the strangers' caps off its connections.
    func isMemberHost(_ host: String) -> Bool { view.withLock { $0.addresses.values.contains { ListenAddress($0)?.host == host } } }

    func seal(_ plaintext: [UInt8]) -> [UInt8] { view.withLock { $0.keyring }.seal(plaintext) }
    func open(_ sealed: [UInt8]) -> [UInt8]? { view.withLock { $0.keyring }.open(sealed) }

    func placement(bucket: String, key: String) throws -> Placed? {
        let (layout, migrating, own) = raft.read { ($0.layout, $0.migrating, $0.buckets[bucket]?.scheme) }
        let (addresses, spread) = view.withLock { ($0.addresses, $0.spread) }
        if layout.members.count >= 2 && !spread {
            view.withLock { $0.spread = true }
            save()
        } else if !spread {
            return nil
        }
        guard !layout.members.isEmpty else { throw PlaneError("this node's replica of the data layout is still loading") }
        // A bucket's own scheme takes the first slots of the partition while the layout is that wide.
        let scheme = own.flatMap { $0.width <= layout.scheme.width ? $0 : nil } ?? layout.scheme
        func holders(_ l: Layout) -> [String] { l.holders(of: Placement.partition(bucket: bucket, key: key, partitions: l.partitions)) }
        let nodes = Array(holders(layout).prefix(scheme.width))
        // Earlier versions' rows whole: asking a node that holds nothing of the key costs a round trip, missing one a read.
        var earlier: [String] = []
        for l in migrating { for n in holders(l) where !nodes.contains(n) && !earlier.contains(n) { earlier.append(n) } }
        func placed(_ n: String) -> PlacedNode { PlacedNode(name: n, address: addresses[n]) }
        return Placed(k: scheme.k, m: scheme.m, nodes: nodes.map(placed), version: layout.version, earlier: earlier.map(placed))
    }

    /// Every node of the layout and of earlier versions still consulted.
    func everyNode() -> [PlacedNode] {
        let names = raft.read { s in
            var names = s.layout.members.map(\.name)
            for l in s.migrating { for m in l.members where !names.contains(m.name) { names.append(m.name) } }
            return names
        }
        let addresses = view.withLock { $0.addresses }
        return names.map { PlacedNode(name: $0, address: addresses[$0]) }
    }
}
