@testable import Gossip

/// A deterministic network of SWIM cores in one process: every fault (loss, delay, slow nodes,
/// partitions, crashes) is drawn from one seed, and simulated time runs as fast as the CPU allows.
struct Simulator {
    struct Node {
        var swim: SWIM
        var crashed = false
        /// Extra delay on every packet this node receives, drawn per packet up to this bound:
        /// a CPU-starved process that reads its socket late.
        var slowness = Span(nanoseconds: 0)
    }

    struct InFlight {
        var at: Instant
        var order: UInt64
        var to: Int
        var packet: Packet
    }

    var nodes: [Node] = []
    var now = Instant(nanoseconds: 0)
    var rng: SeededRandom
    var lossRate = 0.0
    var delayMin = Span.milliseconds(1)
    var delayMax = Span.milliseconds(5)
    /// Packets whose encoding is larger are dropped, as UDP would (nil: no limit, no encoding cost).
    var maxDatagramBytes: Int? = nil
    var oversized = 0
    /// Partition group per node; packets between groups are dropped. nil: one network.
    var groups: [Int]? = nil
    var tickEvery = Span.milliseconds(100)
    /// Called for every membership event: (observer index, event).
    var observe: ((Int, MembershipEvent, Instant) -> Void)? = nil
    private var queue = Heap()
    private var sent: UInt64 = 0
    private var index: [String: Int] = [:]
    private(set) var packetsSent = 0

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    static func address(_ i: Int) -> String { "10.0.\(i / 256).\(i % 256):7946" }

    @discardableResult
    mutating func addNode(settings: SWIMSettings = SWIMSettings(), tags: [String: String] = [:]) -> Int {
        let i = nodes.count
        let swim = SWIM(name: "n\(i)", address: Self.address(i), tags: tags, settings: settings, seed: rng.next(), now: now)
        nodes.append(Node(swim: swim))
        index[Self.address(i)] = i
        return i
    }

    mutating func join(_ i: Int, seeds: [Int]) {
        let effects = nodes[i].swim.join(seeds: seeds.map(Self.address), now: now)
        execute(i, effects)
    }

    mutating func leave(_ i: Int) { execute(i, nodes[i].swim.leave(now: now)) }

    mutating func crash(_ i: Int) { nodes[i].crashed = true }

    mutating func execute(_ from: Int, _ effects: [Effect]) {
        for e in effects {
            switch e {
            case .send(let p, let to):
                packetsSent += 1
                guard let dest = index[to] else { continue }
                if let g = groups, g[from] != g[dest] { continue }
                if let limit = maxDatagramBytes, WireFormat.encode(p).count > limit { oversized += 1; continue }
                if lossRate > 0 && Double(rng.next() % 1_000_000) / 1e6 < lossRate { continue }
                var delay = delayMin.nanoseconds + Int64(rng.next() % UInt64(max(1, delayMax.nanoseconds - delayMin.nanoseconds)))
                let slow = nodes[dest].slowness.nanoseconds
                if slow > 0 { delay += Int64(rng.next() % UInt64(slow)) }
                sent += 1
                queue.push(InFlight(at: now + Span(nanoseconds: delay), order: sent, to: dest, packet: p))
            case .event(let ev):
                observe?(from, ev, now)
            }
        }
    }

    /// Runs until `end`, or until `stop` says so (checked after every tick round).
    mutating func run(until end: Instant, stop: ((Simulator) -> Bool)? = nil) {
        var nextTick = now
        while now < end {
            if let head = queue.peek, head.at <= nextTick {
                let m = queue.pop()!
                now = m.at
                guard !nodes[m.to].crashed else { continue }
                let effects = nodes[m.to].swim.receive(m.packet, now: now)
                execute(m.to, effects)
                continue
            }
            now = nextTick
            for i in nodes.indices where !nodes[i].crashed {
                let effects = nodes[i].swim.tick(now: now)
                execute(i, effects)
            }
            nextTick = now + tickEvery
            if let stop, stop(self) { return }
        }
    }

    /// Number of live nodes whose view shows every other live node as alive and every crashed
    /// node as `crashedStatus`.
    func converged(crashedStatus: Set<MemberStatus> = [.dead, .left]) -> Bool {
        for i in nodes.indices where !nodes[i].crashed {
            let s = nodes[i].swim
            for j in nodes.indices where j != i {
                let m = s.member("n\(j)")
                if nodes[j].crashed {
                    guard let m, crashedStatus.contains(m.status) else { return false }
                } else {
                    guard m?.status == .alive else { return false }
                }
            }
        }
        return true
    }
}

/// Binary min-heap of packets in flight, ordered by delivery time then send order.
struct Heap {
    private var items: [Simulator.InFlight] = []
    var peek: Simulator.InFlight? { items.first }

    private static func less(_ a: Simulator.InFlight, _ b: Simulator.InFlight) -> Bool {
        a.at == b.at ? a.order < b.order : a.at < b.at
    }

    mutating func push(_ x: Simulator.InFlight) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard Self.less(items[i], items[p]) else { break }
            items.swapAt(i, p); i = p
        }
    }

    mutating func pop() -> Simulator.InFlight? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && Self.less(items[l], items[m]) { m = l }
            if r < items.count && Self.less(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m); i = m
        }
        return top
    }
}
