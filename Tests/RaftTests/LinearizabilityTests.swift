import Testing

@testable import Raft

/// Client histories from the faulty simulator, checked against a sequential key-value model:
/// writes through Raft's log, reads through ReadIndex.
@Suite struct LinearizabilityTests {
    static func history(size: Int, seed: UInt64, ticks: Int = 250) -> (problems: [String], histories: [UInt8: RegisterHistory]) {
        var sim = RaftSimulator(size: size, seed: seed)
        var r = SeededRandom(seed: seed ^ 0xC0FFEE)
        sim.lossPercent = Int(r.next() % 6)
        sim.duplicatePercent = Int(r.next() % 4)
        sim.maxDelay = 1 + Int(r.next() % 3)
        var histories: [UInt8: RegisterHistory] = [0: RegisterHistory(), 1: RegisterHistory()]
        // op id -> (key, position in its history, peer, incarnation)
        var waiting: [UInt64: (key: UInt8, slot: Int, peer: String, incarnation: Int)] = [:]
        var nextOp: UInt64 = 1
        for _ in 0..<ticks {
            let dice = r.next() % 100
            if dice < 2, let victim = sim.up.randomElement(using: &r) {
                sim.crash(victim)
            } else if dice < 6, let back = sim.names.filter({ !sim.up.contains($0) }).randomElement(using: &r) {
                sim.start(back)
            } else if dice < 8 {
                sim.groups = Dictionary(uniqueKeysWithValues: sim.names.map { ($0, Int(r.next() % 2)) })
            } else if dice < 12 {
                sim.groups = nil
            }
            let key = UInt8(r.next() % 2)
            if histories[key]!.operations.count < 60, r.next() % 3 == 0, let leader = sim.leader {
                let op = nextOp; nextOp += 1
                if r.next() % 2 == 0 {
                    let value = UInt32(op)
                    var data: [UInt8] = [0x57, key]
                    data += withUnsafeBytes(of: value.littleEndian) { Array($0) }
                    data += withUnsafeBytes(of: UInt32(op).littleEndian) { Array($0) }
                    if let (_, ready) = sim.peers[leader]!.node!.propose(data) {
                        histories[key]!.operations.append(.init(kind: .write(value), invoke: sim.now, response: nil))
                        waiting[op] = (key, histories[key]!.operations.count - 1, leader, sim.peers[leader]!.incarnation)
                        sim.handle(leader, ready)
                    }
                } else if let ready = sim.peers[leader]!.node!.readIndex(id: op) {
                    histories[key]!.operations.append(.init(kind: .read(nil), invoke: sim.now, response: nil))
                    waiting[op] = (key, histories[key]!.operations.count - 1, leader, sim.peers[leader]!.incarnation)
                    sim.readKeys[op] = key
                    sim.handle(leader, ready)
                }
            }
            sim.step()
            for c in sim.completions {
                guard let w = waiting[c.op], w.peer == c.peer, w.incarnation == c.incarnation else { continue }
                waiting[c.op] = nil
                histories[w.key]!.operations[w.slot].response = c.tick
                if case .read = histories[w.key]!.operations[w.slot].kind {
                    histories[w.key]!.operations[w.slot].kind = .read(c.value)
                }
            }
            sim.completions = []
            if !sim.violations.isEmpty { return (sim.violations, histories) }
        }
        var problems: [String] = []
        for (key, h) in histories.sorted(by: { $0.key < $1.key }) where !h.isLinearizable() {
            problems.append("seed \(seed): history of key \(key) (\(h.operations.count) operations) is not linearizable")
        }
        return (problems, histories)
    }

    @Test(arguments: [3, 5], 0..<100 as Range<UInt64>)
    func historiesAreLinearizable(size: Int, seed: UInt64) {
        let (problems, _) = Self.history(size: size, seed: seed)
        #expect(problems.isEmpty, "size \(size): \(problems.joined(separator: "; "))")
    }

    /// Guards against a vacuous pass: the workload completes many operations, reads included.
    @Test func workloadCompletesReadsAndWrites() {
        var reads = 0, writes = 0
        for seed in 0..<10 as Range<UInt64> {
            for h in Self.history(size: 3, seed: seed).histories.values {
                for op in h.operations where op.response != nil {
                    if case .read = op.kind { reads += 1 } else { writes += 1 }
                }
            }
        }
        print("raft-sim: 10 histories completed \(reads) reads and \(writes) writes")
        #expect(reads > 50 && writes > 50)
    }

    @Test func checkerRejectsAStaleRead() {
        var h = RegisterHistory()
        h.operations = [
            .init(kind: .write(1), invoke: 0, response: 1),
            .init(kind: .write(2), invoke: 2, response: 3),
            .init(kind: .read(1), invoke: 4, response: 5),  // reads the overwritten value after the overwrite finished
        ]
        #expect(!h.isLinearizable())
        h.operations[2].invoke = 2  // overlapping the second write: reading 1 is now fine
        #expect(h.isLinearizable())
        h.operations.append(.init(kind: .write(3), invoke: 6, response: nil))  // pending write may never happen
        h.operations.append(.init(kind: .read(2), invoke: 7, response: 8))
        #expect(h.isLinearizable())
    }
}
