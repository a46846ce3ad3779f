import Determinism
import Glibc  // log only: the core reads no clock and draws no randomness of its own

/// Where each partition's shards live, as a pure core: a fixed number of partitions (an object
/// goes to the partition its bucket and key hash to), and for each partition `shards` (k+m)
/// distinct nodes, chosen by weighted rendezvous hashing and spread over zones before nodes.
///
/// Choosing: every node gets a score per partition, −weight / ln(u) with u in (0, 1) from a hash
/// of (partition, node name), the weighted form of rendezvous hashing (a node's chance to score
/// highest is its share of the weight). Nodes are taken zone by zone in rounds: the best node of
/// each zone, best zone first, then every zone's second best, and so on, so a partition uses as
/// many zones as there are before it puts two shards in one.
///
/// Keeping: `assign` takes the previous assignment, and a node still chosen for a partition keeps
/// its slot (shard number); only slots whose node left the chosen set are given to the newcomers.
/// So adding or removing one node of N moves about 1/N of all shards, not every shard after the
/// one that changed.
public enum Placement {
    public struct Node: Sendable, Equatable {
        public var name: String
        public var zone: String
        /// Capacity weight; 0 takes no new shards (a drained node).
        public var weight: UInt32
        public init(name: String, zone: String, weight: UInt32) { self.name = name; self.zone = zone; self.weight = weight }
    }

    /// The partition of an object: a stable 64-bit hash of bucket and key (the same on every node
    /// and every build; Swift's own hashing is seeded per process), reduced to `partitions`.
    public static func partition(bucket: String, key: String, partitions: Int) -> Int {
        precondition(partitions > 0)
        var h = fnv1a(Array(bucket.utf8))
        h = SeededRandom.mix(h ^ fnv1a([0] + Array(key.utf8)))
        return Int(h % UInt64(partitions))
    }

    /// The nodes chosen for `partition`, best first (at most `shards`; fewer when fewer nodes weigh).
    public static func choose(partition: Int, shards: Int, nodes: [Node]) -> [String] {
        var byZone: [String: [(score: Double, name: String)]] = [:]
        for n in nodes where n.weight > 0 {
            byZone[n.zone, default: []].append((score(partition, n), n.name))
        }
        var zones = byZone.map { zone, list in (zone: zone, list: list.sorted { $0.score != $1.score ? $0.score > $1.score : $0.name < $1.name }) }
        zones.sort { $0.list[0].score != $1.list[0].score ? $0.list[0].score > $1.list[0].score : $0.zone < $1.zone }
        var chosen: [String] = []
        var round = 0
        while chosen.count < shards {
            var took = false
            for z in zones where round < z.list.count && chosen.count < shards {
                chosen.append(z.list[round].name)
                took = true
            }
            if !took { break }
            round += 1
        }
        return chosen
    }

    /// The assignment for every partition: slot i of partition p holds shard i. Nodes still
    /// chosen keep their slots from `previous`; freed slots go to newcomers, best first.
    public static func assign(partitions: Int, shards: Int, nodes: [Node], previous: [[String]]? = nil) -> [[String]] {
        (0..<partitions).map { p in
            let chosen = choose(partition: p, shards: shards, nodes: nodes)
            let wanted = Set(chosen)
            var slots: [String?] = Array(repeating: nil, count: chosen.count)
            if let old = previous, p < old.count {
                for (i, n) in old[p].enumerated() where i < slots.count && wanted.contains(n) { slots[i] = n }
            }
            var placed = Set(slots.compactMap { $0 })
            var newcomers = chosen.filter { !placed.contains($0) }.makeIterator()
            for i in slots.indices where slots[i] == nil {
                slots[i] = newcomers.next()
                placed.insert(slots[i]!)
            }
            return slots.map { $0! }
        }
    }

    static func score(_ partition: Int, _ n: Node) -> Double {
        let h = SeededRandom.mix(fnv1a(Array(n.name.utf8)) ^ (UInt64(partition) &* 0x9E37_79B9_7F4A_7C15))
        // u in (0, 1): the top 53 bits, never 0 or 1.
        let u = (Double(h >> 11) + 0.5) / Double(1 << 53)
        return -Double(n.weight) / log(u)
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}
