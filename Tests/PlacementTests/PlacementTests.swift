import Determinism
import Placement
import Simulation
import Testing

/// Placement over random clusters (1 to 24 nodes, 1 to 5 zones, weights, drained nodes): every
/// partition gets its shards on distinct weighted nodes spread over as many zones as there are;
/// shares follow weights; adding or removing one node moves about 1/N of the shards.
@Suite struct PlacementTests {
    static func cluster(_ rng: inout SeededRandom, nodes n: Int, zones: Int, drained: Bool) -> [Placement.Node] {
        (0..<n).map { i in
            Placement.Node(name: "node-\(i)", zone: "z\(rng.below(zones))", weight: drained && rng.chance(0.15) ? 0 : UInt32(1 + rng.below(4)))
        }
    }

    @Test func overThreeHundredSeedsEveryPartitionIsSpread() {
        let failures = Seeds.each(0..<300) { seed in
            var rng = SeededRandom(seed: seed)
            let nodes = Self.cluster(&rng, nodes: 1 + rng.below(24), zones: 1 + rng.below(5), drained: true)
            let weighted = nodes.filter { $0.weight > 0 }
            let shards = [1, 3, 6][rng.below(3)]
            let zones = Set(weighted.map(\.zone)).count
            let a = Placement.assign(partitions: 64, shards: shards, nodes: nodes)
            var problems: [String] = []
            if a != Placement.assign(partitions: 64, shards: shards, nodes: nodes.reversed()) { problems.append("depends on the order nodes are listed in") }
            for (p, slots) in a.enumerated() {
                let zonesUsed = Set(slots.map { s in nodes.first { $0.name == s }!.zone }).count
                if slots.count != min(shards, weighted.count) {
                    problems.append("partition \(p): \(slots.count) slots for \(shards) shards, \(weighted.count) nodes")
                }
                if Set(slots).count != slots.count { problems.append("partition \(p): a node holds two shards: \(slots)") }
                if slots.contains(where: { s in nodes.first { $0.name == s }!.weight == 0 }) { problems.append("partition \(p): a drained node") }
                if zonesUsed != min(slots.count, zones) { problems.append("partition \(p): \(zonesUsed) zones of \(zones)") }
            }
            return Array(problems.prefix(3))
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
    }

    /// The fraction of shard slots whose node changed between two assignments.
    static func moved(_ a: [[String]], _ b: [[String]]) -> Double {
        var changed = 0, total = 0
        for (x, y) in zip(a, b) {
            for i in 0..<max(x.count, y.count) {
                total += 1
                if i >= x.count || i >= y.count || x[i] != y[i] { changed += 1 }
            }
        }
        return Double(changed) / Double(total)
    }

    @Test(arguments: [(7, 1), (12, 1), (24, 1), (12, 3), (24, 4)])  // N - 1 ≥ 6: the cluster still holds 4+2
    func addingOrRemovingOneNodeMovesAboutOneNth(n: Int, zones: Int) {
        var rng = SeededRandom(seed: UInt64(n * 10 + zones))
        let nodes = (0..<n).map { Placement.Node(name: "node-\($0)", zone: "z\($0 % zones)", weight: 1) }
        let before = Placement.assign(partitions: 1024, shards: 6, nodes: nodes)
        let added = nodes + [Placement.Node(name: "node-new", zone: "z\(rng.below(zones))", weight: 1)]
        let grown = Placement.assign(partitions: 1024, shards: 6, nodes: added, previous: before)
        let shrunk = Placement.assign(partitions: 1024, shards: 6, nodes: Array(nodes.dropFirst()), previous: before)
        let up = Self.moved(before, grown), down = Self.moved(before, shrunk)
        print(
            "placement: \(n) nodes in \(zones) zones, 4+2 over 1024 partitions: adding one moves \(up) of shards (1/(N+1) = \(1.0 / Double(n + 1))), removing one \(down) (1/N = \(1.0 / Double(n)))"
        )
        // Rendezvous moves only what must move; zone rounds can shift a little more.
        #expect(up <= 1.5 / Double(n + 1) && down <= 1.5 / Double(n))
        #expect(up >= 0.5 / Double(n + 1) && down >= 0.5 / Double(n))
        #expect(Placement.assign(partitions: 1024, shards: 6, nodes: nodes, previous: grown) == before, "removing the newcomer again restores the layout")
    }

    @Test func sharesFollowWeights() {
        let nodes = (1...6).map { Placement.Node(name: "node-\($0)", zone: "z", weight: UInt32($0)) }
        let a = Placement.assign(partitions: 8192, shards: 1, nodes: nodes)
        var counts: [String: Int] = [:]
        for slots in a { counts[slots[0], default: 0] += 1 }
        let total = Double(nodes.reduce(0) { $0 + Int($1.weight) })
        for n in nodes {
            let share = Double(counts[n.name] ?? 0) / 8192, want = Double(n.weight) / total
            #expect(abs(share - want) < 0.15 * want, "\(n.name): \(share) of partitions, weight share \(want)")
        }
    }

    @Test func objectsHashToStablePartitions() {
        // Where data lives must not change between builds or nodes (Swift's Hasher is seeded per
        // process): these values were computed independently (FNV-1a, SplitMix64) in Python.
        #expect(Placement.partition(bucket: "photos", key: "2026/cat.jpg", partitions: 256) == 10)
        #expect(Placement.partition(bucket: "photos", key: "2026/cat.jpg", partitions: 1 << 20) == 988_938)
        #expect(Placement.partition(bucket: "ab", key: "", partitions: 1 << 20) != Placement.partition(bucket: "a", key: "b", partitions: 1 << 20))
        var counts = [Int](repeating: 0, count: 16)
        for i in 0..<16_000 { counts[Placement.partition(bucket: "b", key: "key-\(i)", partitions: 16)] += 1 }
        #expect(counts.allSatisfy { $0 > 800 && $0 < 1200 }, "\(counts)")
    }
}
