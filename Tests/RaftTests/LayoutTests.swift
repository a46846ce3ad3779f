import Cluster
import Determinism
import Raft
import Simulation
import Support
import Testing

@Suite struct LayoutTests {
    func req(_ n: UInt64, _ c: Command) -> Request { Request(id: RequestID(hi: 9, lo: n), command: c) }
    func members(_ n: Int, zones: Int = 1) -> [Layout.Member] {
        (0..<n).map { Layout.Member(name: "n\($0)", zone: "z\($0 % zones)", weight: Layout.defaultWeight) }
    }

    /// Every size gets a scheme it can place, one shard per node, surviving a loss from two nodes on.
    @Test func automaticSchemeFitsTheClusterSize() throws {
        let expected = [1: "1+0", 2: "1+1", 3: "2+1", 4: "2+2", 5: "3+2", 6: "4+2", 12: "4+2"]
        for (n, s) in expected {
            let l = try Layout().next(members: members(n), requested: .automatic)
            #expect(l.scheme.description == s, "\(n) nodes")
            #expect(l.problem() == nil)
            for p in [0, 511, 1023] { #expect(Set(l.holders(of: p)).count == l.scheme.width) }
        }
        // A requested scheme wider than the weighted nodes falls back to the automatic one.
        let asked = try Layout().next(members: members(5), requested: .fixed(ErasureScheme(k: 8, m: 4)))
        #expect(asked.scheme.description == "3+2")
        #expect(try asked.next(members: members(12), requested: asked.requested).scheme.description == "8+4")
        #expect(ErasureScheme(parsing: "0+1") == nil && ErasureScheme(parsing: "2+3") == nil && ErasureScheme(parsing: "4+2") != nil)
    }

    /// Adding or removing one node of N moves close to 1/N of the shard slots (printed).
    @Test func oneNodeMovesAboutOneNth() throws {
        let six = try Layout().next(members: members(6, zones: 3), requested: .automatic)
        let seven = try six.next(members: members(7, zones: 3), requested: .automatic)
        let back = try seven.next(members: members(6, zones: 3), requested: .automatic)
        func moved(_ a: Layout, _ b: Layout) -> Double {
            var n = 0
            for p in 0..<a.partitions { n += zip(a.holders(of: p), b.holders(of: p)).filter { $0 != $1 }.count }
            return Double(n) / Double(a.partitions * a.scheme.width)
        }
        let add = moved(six, seven), remove = moved(seven, back)
        print("layout: 6 -> 7 nodes moved \(add) of shard slots, 7 -> 6 moved \(remove) (1/7 = \(1.0 / 7))")
        #expect(add > 0.08 && add < 0.2)
        #expect(remove > 0.08 && remove < 0.2)
        // Shares follow weights: a node of weight 300 among 100s holds about three times the slots
        // (with many nodes: a node holds at most one slot of a partition, so among 8 nodes
        // with 6 slots each no weight can take it past every partition).
        var heavy = members(40)
        heavy[0].weight = 300
        let h = try Layout().next(members: heavy, requested: .automatic).slotsPerMember()
        let ratio = Double(h["n0"]!) / Double(h["n1"]!)
        print("layout: weight 300 among 39 of weight 100 holds \(ratio)x their slots")
        #expect(ratio > 2.2 && ratio < 3.5, "n0/n1 = \(ratio)")
    }

    @Test func stagingApplyingAndMigrating() throws {
        var s = ClusterState()
        var i: UInt64 = 0
        func apply(_ c: Command) -> Outcome { i += 1; return s.apply(req(i, c)).outcome }
        let l1 = try s.layout.next(members: members(3), requested: .automatic)
        #expect(apply(.applyLayout(l1, consumed: LayoutStage())) == .ok)
        #expect(apply(.applyLayout(l1, consumed: LayoutStage())) == .staleLayout)
        var broken = try l1.next(members: members(4), requested: .automatic)
        broken.assignment[7] = [0, 0, 1, 2]
        #expect(apply(.applyLayout(broken, consumed: LayoutStage())) == .invalidLayout)
        var wide = try l1.next(members: members(3), requested: .automatic)
        wide.scheme = ErasureScheme(k: 200, m: 100)
        #expect(apply(.applyLayout(wide, consumed: LayoutStage())) == .invalidLayout)
        #expect(apply(.stageLayout(LayoutStage(weights: ["nope": 1]))) == .noSuchNode)
        #expect(apply(.stageLayout(LayoutStage(weights: ["n1": 0]))) == .ok)
        #expect(apply(.stageLayout(LayoutStage(weights: ["n2": 50], scheme: .fixed(ErasureScheme(k: 1, m: 1))))) == .ok)
        #expect(s.staged == LayoutStage(weights: ["n1": 0, "n2": 50], scheme: .fixed(ErasureScheme(k: 1, m: 1))))
        // The operator's apply took in n1's drain only; what was staged after it stays staged.
        var m = members(3)
        m[1].weight = 0
        let l2 = try s.layout.next(members: m, requested: s.layout.requested)
        #expect(apply(.applyLayout(l2, consumed: LayoutStage(weights: ["n1": 0]))) == .ok)
        #expect(s.staged == LayoutStage(weights: ["n2": 50], scheme: .fixed(ErasureScheme(k: 1, m: 1))))
        #expect(s.layout.scheme.description == "1+1" && !s.layout.holders(of: 3).contains("n1"))
        #expect(s.migrating.map(\.version) == [1])
        for j in 0..<6 {  // each version moves shards (a version that moves none retires the one before at once)
            _ = apply(.applyLayout(try s.layout.next(members: j % 2 == 0 ? members(4) : m, requested: .automatic), consumed: LayoutStage()))
        }
        #expect(s.migrating.map(\.version) == [7, 6, 5, 4])
        #expect(apply(.finishMigration(version: 6)) == .ok)
        #expect(s.migrating.map(\.version) == [7, 6])
        // A version that moves no shard (the same members again) leaves nothing to migrate from.
        #expect(apply(.applyLayout(try s.layout.next(members: s.layout.members, requested: s.layout.requested), consumed: LayoutStage())) == .ok)
        #expect(s.layout.version == 9 && s.migrating.map(\.version) == [7, 6])
        #expect(apply(.revertLayout) == .ok && s.staged.isEmpty)

        let t = try ClusterState(decoding: s.encoded())
        #expect(t == s)
        for c in [
            Command.stageLayout(LayoutStage(weights: ["a": 3], scheme: .automatic)), .revertLayout, .applyLayout(l2, consumed: s.staged),
            .finishMigration(version: 4),
        ] {
            #expect(try Request(decoding: req(1, c).encoded) == req(1, c))
        }
    }

    /// A snapshot written before layouts existed still loads, with an empty layout.
    @Test func versionOneStateLoads() throws {
        var w = BinaryWriter()
        w.u8(1); w.string("cid")
        w.u32(1); w.string("bkt"); w.i64(5)
        w.u32(0); w.u32(0)
        w.u64(1); w.u32(0)
        let s = try ClusterState(decoding: w.bytes)
        #expect(s.clusterID == "cid" && s.buckets["bkt"] != nil && s.layout.version == 0 && s.layout.members.isEmpty)
    }

    /// The policy over random joins, crashes, restarts, graceful leaves and zone moves: every
    /// version it proposes is valid; it never drops the leader or a node dead for less than
    /// `removeAfter`, never changes a weight the operator set; once things settle the layout is
    /// exactly the alive group members plus the recently dead, with the scheme for their count.
    @Test func policyKeepsLayoutInStepWithMembership() {
        let removeAfter = Span.seconds(30)
        let policy = LayoutPolicy(removeAfter: removeAfter)
        var versions = 0
        let failures = Seeds.each(0..<200) { seed in
            var failures: [String] = []
            var rng = SeededRandom(seed: seed)
            var now = Instant(nanoseconds: 0)
            var layout = Layout()
            layout.partitions = 32  // the policy's choices do not depend on the count; the sim runs 30× faster
            var nodes: [String: LayoutPolicy.Node] = ["n0": .init(health: .alive, since: now, zone: "z0")]
            func step(_ steps: Int, churn: Bool) {
                for _ in 0..<steps {
                    now = now + Span.seconds(1)
                    let name = "n\(rng.next() % 9)"
                    switch churn ? rng.next() % 10 : 99 {
                    case 0, 1: if name != "n0" { nodes[name] = .init(health: .dead, since: now, zone: nodes[name]?.zone) }
                    case 2: if name != "n0" { nodes[name] = .init(health: .left, since: now, zone: nodes[name]?.zone) }
                    case 3, 4, 5:
                        if nodes[name]?.health != .alive {
                            nodes[name] = .init(health: .alive, since: now, zone: "z\(rng.next() % 3)", inGroup: rng.next() % 4 != 0)
                        }
                    case 6: if var n = nodes[name], n.health == .alive { n.zone = "z\(rng.next() % 3)"; nodes[name] = n }
                    case 7:  // the operator sets a weight (0 drains; never n0's, so some node always weighs)
                        if name != "n0", let i = layout.members.firstIndex(where: { $0.name == name }) {
                            var ms = layout.members
                            ms[i].weight = UInt32(rng.next() % 3) * 100
                            if let l = try? layout.next(members: ms, requested: layout.requested) { layout = l }
                        }
                    case 8: if var n = nodes[name], !n.inGroup { n.inGroup = true; nodes[name] = n }
                    default: break
                    }
                    let plan = policy.plan(.init(leader: "n0", layout: layout, nodes: nodes, now: now))
                    guard let next = plan.first else { continue }
                    versions += 1
                    if plan.count > 1 { failures.append("\(plan.count) versions at once") }
                    if let p = next.problem() { failures.append("invalid version: \(p)") }
                    if next.version != layout.version + 1 { failures.append("version \(next.version) after \(layout.version)") }
                    if next.member("n0") == nil { failures.append("the leader left the layout") }
                    for m in layout.members {
                        guard let kept = next.member(m.name) else {
                            let n = nodes[m.name]
                            if !(n.map { ($0.health == .dead || $0.health == .left) && now - $0.since >= removeAfter } ?? false) {
                                failures.append("\(m.name) removed at \(now) while \(String(describing: n))")
                            }
                            continue
                        }
                        if kept.weight != m.weight { failures.append("\(m.name)'s weight \(m.weight) changed to \(kept.weight)") }
                    }
                    layout = next
                }
            }
            step(200, churn: true)
            step(40, churn: false)
            let expected = nodes.filter { name, n in name == "n0" || (n.health == .alive && (n.inGroup || layout.member(name) != nil)) }.keys.sorted()
            if layout.members.map(\.name) != expected { failures.append("settled layout \(layout.members.map(\.name)), expected \(expected)") }
            for m in layout.members where nodes[m.name]?.health == .alive {
                if let z = nodes[m.name]?.zone, z != m.zone { failures.append("\(m.name) in zone \(m.zone), gossip says \(z)") }
            }
            let weighted = layout.members.filter { $0.weight > 0 }.count
            if weighted > 0 && layout.scheme != .automatic(nodes: weighted) {
                failures.append("scheme \(layout.scheme) for \(weighted) weighted nodes")
            }
            return failures
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("layout-policy: 200 seeds, \(versions) layout versions proposed")
    }

    /// Migration to a version ends once every alive node of it and of the earlier versions
    /// consulted has settled under it; a dead one is not waited for, a lagging one is.
    @Test func migrationEndsWhenEveryAliveNodeSettled() throws {
        let policy = LayoutPolicy(removeAfter: .seconds(30))
        let now = Instant(nanoseconds: 0)
        let old = try Layout().next(members: members(6), requested: Layout().requested)
        let new = try old.next(members: members(7).filter { $0.name != "n5" }, requested: old.requested)
        var nodes: [String: LayoutPolicy.Node] = [:]
        for i in 0..<7 { nodes["n\(i)"] = .init(health: .alive, since: now, settled: new.version) }
        func finished() -> UInt64? { policy.finished(.init(leader: "n0", layout: new, nodes: nodes, now: now), migrating: [old]) }
        #expect(finished() == new.version)
        #expect(policy.finished(.init(leader: "n0", layout: new, nodes: nodes, now: now), migrating: []) == nil, "nothing migrating")
        nodes["n5"]!.settled = old.version  // removed from the layout, still holding shards it must hand over
        #expect(finished() == nil)
        nodes["n5"]!.health = .dead
        #expect(finished() == new.version, "a dead node is not waited for")
        nodes["n6"]!.settled = 0  // the newcomer has not finished a pass
        #expect(finished() == nil)
    }
}
