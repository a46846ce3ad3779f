import Coordinator
import Determinism
import Simulation
import Testing

@Suite struct HybridClockTests {
    @Test func followsPhysicalTimeAndNeverGoesBack() {
        var c = HybridClock()
        let a = c.now(1_000)
        #expect(a == .init(ms: 1_000, logical: 0))
        let (b, back, later) = (c.now(1_000), c.now(900), c.now(2_000))
        #expect(b == .init(ms: 1_000, logical: 1))
        #expect(back == .init(ms: 1_000, logical: 2), "the physical clock stepped back")
        #expect(later == .init(ms: 2_000, logical: 0))
        // A peer's later timestamp orders what follows after it.
        let took = c.observe(.init(ms: 5_000, logical: 7), nowMs: 2_000)
        #expect(took)
        let after = c.now(2_001)
        #expect(after == .init(ms: 5_000, logical: 8))
        // One far in the future is refused and changes nothing.
        let refused = !c.observe(.init(ms: 900_000, logical: 0), nowMs: 2_002)
        #expect(refused)
        let unchanged = c.now(2_002)
        #expect(unchanged == .init(ms: 5_000, logical: 9))
        // The logical counter carries into the milliseconds instead of wrapping.
        var d = HybridClock()
        d.observe(.init(ms: 10, logical: .max), nowMs: 10)
        let carried = d.now(10)
        #expect(carried == .init(ms: 11, logical: 0))
        let clamped = d.now(-5)
        #expect(clamped > carried, "negative physical time is clamped")
    }
}

/// Writers with skewed clocks race on one key of a k+m partition: each write reaches a random
/// subset of the nodes and is acknowledged once it reached the write quorum (k+1); reads ask
/// every node while up to m are silent. A read never serves a version older than the newest
/// acknowledged one (nor a delete older than it), serves k distinct shards, data shards first;
/// with every node answering it always decides; with at most w−k silent it is never in doubt
/// unless a newer write may have been acknowledged; and a writer that saw a version writes above it.
@Suite struct ReadResolutionTests {
    /// A version keeps the scheme it was written with: one written at 2+1 reads from its 2 data
    /// shards under a layout now at 4+2; one claiming 4+2 with 3 shards is not whole.
    @Test func eachVersionIsWholeByItsOwnScheme() {
        let old = ObjectVersion(time: .init(ms: 1, logical: 0), writer: 1), new = ObjectVersion(time: .init(ms: 2, logical: 0), writer: 2)
        var answers: [String: ShardAnswer] = [:]
        for i in 0..<6 { answers["n\(i)"] = .holds(i < 3 ? [Held(old, shard: i, k: 2, m: 1)] : []) }
        guard case .serve(let v, let shards, _) = ReadResolution.resolve(answers, k: 4, readQuorum: 2, writeQuorum: 5) else {
            Issue.record("not served")
            return
        }
        #expect(v == old && shards.map(\.shard) == [0, 1])
        for i in 0..<3 { answers["n\(i)"] = .holds([Held(new, shard: i, k: 4, m: 2), Held(old, shard: i, k: 2, m: 1)]) }
        answers["n3"] = .failed
        #expect(ReadResolution.resolve(answers, k: 2, readQuorum: 2, writeQuorum: 4) == .inDoubt(new), "3 of the 4 shards 4+2 needs, one node silent")
    }

    @Test func readsNeverServeOlderThanTheNewestAcknowledgedWrite() {
        var counts = (reads: 0, served: 0, inDoubt: 0, repairs: 0)
        let failures = Seeds.each(0..<500) { seed in
            var rng = SeededRandom(seed: seed)
            var failures: [String] = []
            let schemes = [(1, 1), (2, 1), (2, 2), (3, 2), (4, 2), (8, 4)]
            let (k, m) = schemes[Int(rng.next() % UInt64(schemes.count))]
            let n = k + m, w = k + 1
            let nodes = (0..<n).map { "n\($0)" }
            var held: [String: [Held]] = [:]
            var clocks = (0..<3).map { _ in HybridClock() }
            let skew = (0..<3).map { _ in Int64(rng.next() % 4000) - 2000 }
            var now: Int64 = 1_000_000
            var acked: ObjectVersion?
            var ackedDelete = false
            for _ in 0..<40 {
                now += Int64(rng.next() % 50)
                let writer = Int(rng.next() % 3)
                let seen = rng.next() % 2 == 0 ? acked : nil  // this writer read the newest first
                if let a = seen { clocks[writer].observe(a.time, nowMs: now + skew[writer]) }
                let v = ObjectVersion(time: clocks[writer].now(now + skew[writer]), writer: rng.next())
                if let a = seen, v <= a { failures.append("a write after reading \(a) got \(v)") }
                held = write(v, held: held, rng: &rng, nodes: nodes, deleted: rng.next() % 5 == 0, acked: &acked, ackedDelete: &ackedDelete, w: w, k: k, m: m)
                // A read with up to m nodes silent.
                let silent = Set(nodes.filter { _ in rng.next() % UInt64(n) < UInt64(m) }.prefix(Int(rng.next() % UInt64(m + 1))))
                var answers: [String: ShardAnswer] = [:]
                for x in nodes { answers[x] = silent.contains(x) ? .failed : .holds(held[x] ?? []) }
                let r = ReadResolution.resolve(answers, k: k, readQuorum: n - m, writeQuorum: w)
                counts.reads += 1
                switch r {
                case .serve(let v, let shards, let repair):
                    counts.served += 1
                    counts.repairs += repair.count
                    if let a = acked, v < a { failures.append("served \(v), older than acknowledged \(a)") }
                    if shards.count != k || Set(shards.map(\.shard)).count != k || shards.map(\.shard) != shards.map(\.shard).sorted() {
                        failures.append("served \(shards) for \(k)+\(m)")
                    }
                    for s in shards where !(held[s.node] ?? []).contains(where: { $0.version == v && $0.shard == s.shard }) {
                        failures.append("\(s.node) does not hold shard \(s.shard) of \(v)")
                    }
                case .notFound:
                    if let a = acked, !ackedDelete {
                        // Only a delete marker newer than the acknowledged write may hide it.
                        let newerDelete = held.values.contains { $0.contains { $0.deleted && $0.version > a } }
                        if !newerDelete { failures.append("not found although \(a) was acknowledged") }
                    }
                case .inDoubt:
                    counts.inDoubt += 1
                    if silent.isEmpty { failures.append("in doubt with every node answering") }
                case .unavailable:
                    failures.append("unavailable with \(n - silent.count) of \(n) answering")
                }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("read-resolution: 500 seeds, \(counts.reads) reads, \(counts.served) served, \(counts.inDoubt) in doubt, \(counts.repairs) repairs asked")
    }

    /// One write reaching a random subset of nodes (each node its own slot's shard).
    func write(
        _ v: ObjectVersion, held: [String: [Held]], rng: inout SeededRandom, nodes: [String], deleted: Bool,
        acked: inout ObjectVersion?, ackedDelete: inout Bool, w: Int, k: Int, m: Int
    ) -> [String: [Held]] {
        var held = held
        let full = rng.next() % 3 != 0
        let reached = nodes.enumerated().filter { _ in full || rng.next() % 2 == 0 }
        for (slot, node) in reached { held[node, default: []].append(Held(v, shard: slot, k: k, m: m, deleted: deleted)) }
        if reached.count >= w, acked.map({ v > $0 }) ?? true {
            acked = v
            ackedDelete = deleted
        }
        return held
    }
}
