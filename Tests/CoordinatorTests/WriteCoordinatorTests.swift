import Coordinator
import Determinism
import Simulation
import Testing

/// The write coordinator against nodes that prepare slowly, fail mid-stream, commit but lose the
/// answer, or go silent, over 1,000 seeds: every write ends in exactly one outcome within the
/// prepare timeout and the commit answers; an acknowledged write is committed on at least the
/// write quorum at that moment; a failed one, once its cleanup reached the nodes that are up,
/// is committed and temporary nowhere among them; each node gets open first, commit only after
/// it prepared and only after the body ended, and at most one of commit, abort and revert.
@Suite struct WriteCoordinatorTests {
    struct SimNode {
        var temp = false
        var committed = false
        var up = true
        var effects: [WriteCoordinator.Effect] = []
    }

    enum Event {
        case prepared(Int), failed(Int), committed(Int), bodyEnded
    }

    @Test func everyWriteEndsOnceAndLeavesNoHalfWrite() {
        var tally = (acked: 0, failed: 0, orphans: 0, repairs: 0)
        let grace = Span.seconds(2)
        let failures = Seeds.each(0..<1000) { seed in
            var rng = SeededRandom(seed: seed)
            var failures: [String] = []
            let schemes = [(1, 1), (2, 1), (2, 2), (4, 2), (8, 4)]
            let (k, m) = schemes[Int(rng.next() % UInt64(schemes.count))]
            let n = k + m
            let names = (0..<n).map { "n\($0)" }
            var nodes = Array(repeating: SimNode(), count: n)
            var c = WriteCoordinator(nodes: names, writeQuorum: k + 1, grace: grace, timeout: Span.seconds(10))
            var now = Instant(nanoseconds: 0)
            var queue: [(at: Instant, event: Event)] = []
            func later(_ e: Event, _ maxMs: UInt64) {
                queue.append((now + Span.milliseconds(Int64(1 + rng.next() % maxMs)), e))
            }
            var bodyDone = false
            func run(_ effects: [WriteCoordinator.Effect]) {
                for e in effects {
                    let i: Int
                    switch e {
                    case .open(let node, _), .commit(let node), .abort(let node), .revert(let node): i = names.firstIndex(of: node)!
                    }
                    let before = nodes[i].effects
                    nodes[i].effects.append(e)
                    switch e {
                    case .open(_, let shard):
                        if !before.isEmpty || shard != i { failures.append("\(names[i]) opened as \(e) after \(before)") }
                        switch rng.next() % 16 {
                        case 0: later(.failed(i), 300)  // the stream breaks
                        case 1: nodes[i].up = false; later(.failed(i), 5000)  // crashes; noticed within 5 s
                        case 2: break  // silent: the grace or the timeout ends its wait
                        case 3: nodes[i].temp = true; nodes[i].up = false  // crashes after writing, silently
                        default: nodes[i].temp = true; later(.prepared(i), rng.next() % 4 == 0 ? 3000 : 200)
                        }
                    case .commit:
                        if !bodyDone { failures.append("commit before the body ended") }
                        if before.contains(where: { if case .open = $0 { return false } else { return true } }) {
                            failures.append("\(names[i]) got \(e) after \(before)")
                        }
                        guard nodes[i].up else { later(.failed(i), 500); break }
                        if !nodes[i].temp { failures.append("\(names[i]) committed without having prepared") }
                        nodes[i].temp = false
                        nodes[i].committed = true
                        later(rng.next() % 6 == 0 ? .failed(i) : .committed(i), 200)  // the answer may be lost
                    case .abort, .revert:
                        if before.contains(where: {
                            if case .open = $0 { return false } else if case .commit = $0 { return e == .abort(node: names[i]) } else { return true }
                        }) {
                            failures.append("\(names[i]) got \(e) after \(before)")
                        }
                        if nodes[i].up { nodes[i].temp = false; nodes[i].committed = false }
                    }
                }
            }
            run(c.start())
            later(.bodyEnded, 400)
            var outcomeAt: Instant?
            while now < Instant(nanoseconds: 30_000_000_000) {
                queue.sort { $0.at < $1.at }
                let next = queue.first.map { min($0.at, now + Span.milliseconds(100)) } ?? now + Span.milliseconds(100)
                now = next
                var effects: [WriteCoordinator.Effect] = []
                while let e = queue.first, e.at <= now {
                    queue.removeFirst()
                    switch e.event {
                    case .bodyEnded: bodyDone = true; effects += c.bodyEnded(now: now)
                    case .prepared(let i): effects += c.prepared(names[i], now: now)
                    case .failed(let i): effects += c.failed(names[i], now: now)
                    case .committed(let i): effects += c.committed(names[i], now: now)
                    }
                }
                effects += c.tick(now: now)
                run(effects)
                if c.outcome != nil && outcomeAt == nil {
                    outcomeAt = now
                    if case .acknowledged(let repair) = c.outcome! {
                        tally.repairs += repair.count
                        let committed = nodes.filter(\.committed).count
                        if committed < k + 1 { failures.append("acknowledged with \(committed) commits") }
                    }
                }
                if outcomeAt != nil && queue.isEmpty { break }
            }
            guard let outcome = c.outcome, let at = outcomeAt else { return failures + ["no outcome after 30 s"] }
            // The body's 400 ms + the 10 s prepare timeout + 500 ms of commit answers.
            if at > Instant(nanoseconds: 0) + Span.seconds(11) { failures.append("outcome only at \(at)") }
            switch outcome {
            case .acknowledged: tally.acked += 1
            case .failed:
                tally.failed += 1
                for (i, x) in nodes.enumerated() where x.up && (x.temp || x.committed) {
                    failures.append("failed write left \(x.committed ? "a committed" : "a temporary") shard on \(names[i])")
                }
                tally.orphans += nodes.filter { !$0.up && ($0.temp || $0.committed) }.count
            }
            return failures
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print(
            "write-coordinator: 1000 seeds, \(tally.acked) acknowledged, \(tally.failed) failed, \(tally.repairs) shards left to repair, \(tally.orphans) left on crashed nodes for their own cleanup"
        )
    }
}
