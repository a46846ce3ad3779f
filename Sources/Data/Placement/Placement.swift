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
        let c = Candidates(nodes)
        return c.choose(partition: partition, shards: shards).map { c.names[$0] }
    }

    /// The assignment for every partition: slot i of partition p holds shard i. Nodes still
    /// chosen keep their slots from `previous`; freed slots go to newcomers, best first.
    public static func assign(partitions: Int, shards: Int, nodes: [Node], previous: [[String]]? = nil) -> [[String]] {
        let c = Candidates(nodes)
        let index = Dictionary(c.names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return (0..<partitions).map { p in
            let chosen = c.choose(partition: p, shards: shards)
            var slots = [Int](repeating: -1, count: chosen.count)
            var placed = [Bool](repeating: false, count: c.names.count)
            var wanted = placed
            for i in chosen { wanted[i] = true }
            if let old = previous, p < old.count {
                for (slot, name) in old[p].enumerated() where slot < slots.count {
                    if let i = index[name], wanted[i], !placed[i] { slots[slot] = i; placed[i] = true }
                }
            }
            var newcomers = chosen.filter { !placed[$0] }.makeIterator()
            for slot in slots.indices where slots[slot] < 0 { slots[slot] = newcomers.next()! }
            return slots.map { c.names[$0] }
        }
    }

    /// The weighing nodes prepared once for many partitions: name hashes, weights and zone numbers.
    struct Candidates {
        var names: [String] = []
        var hashes: [UInt64] = []
        var weights: [Double] = []
        var zones: [Int] = []
        var zoneCount = 0

        init(_ nodes: [Node]) {
            var zoneIDs: [String: Int] = [:]
            // Sorted by name, so ties (of equal scores) break the same way however nodes are listed.
            for n in nodes.sorted(by: { $0.name < $1.name }) where n.weight > 0 {
                names.append(n.name)
                hashes.append(fnv1a(Array(n.name.utf8)))
                weights.append(Double(n.weight))
                if zoneIDs[n.zone] == nil { zoneIDs[n.zone] = zoneIDs.count }
                zones.append(zoneIDs[n.zone]!)
            }
            zoneCount = zoneIDs.count
        }

        /// Indices into `names`: rounds over zones (ordered by their best score), each round
        /// taking every zone's next best node.
        func choose(partition: Int, shards: Int) -> [Int] {
            let mixed = UInt64(truncatingIfNeeded: partition) &* 0x9E37_79B9_7F4A_7C15
            let scores = hashes.indices.map { score(hash: hashes[$0] ^ mixed, weight: weights[$0]) }
            let ranked = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            var perZone = [[Int]](repeating: [], count: zoneCount)
            var zoneOrder: [Int] = []
            for i in ranked {
                if perZone[zones[i]].isEmpty { zoneOrder.append(zones[i]) }
                perZone[zones[i]].append(i)
            }
            var chosen: [Int] = []
            chosen.reserveCapacity(min(shards, ranked.count))
            var round = 0
            while chosen.count < min(shards, ranked.count) {
                for z in zoneOrder where round < perZone[z].count && chosen.count < shards { chosen.append(perZone[z][round]) }
                round += 1
            }
            return chosen
        }
    }

    /// −weight / ln(u), u in (0, 1) from the top 53 bits of the mixed hash (never 0 or 1).
    static func score(hash: UInt64, weight: Double) -> Double {
        let u = (Double(SeededRandom.mix(hash) >> 11) + 0.5) / Double(1 << 53)
        return -weight / log(u)
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}
