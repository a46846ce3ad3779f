import Simulation

@testable import Gossip

/// A deterministic network of SWIM cores in one process, on the simulation kit: every fault
/// (loss, delay, slow nodes, partitions, crashes, clocks off and drifting) is drawn from one seed,
/// and simulated time runs as fast as the CPU allows.
struct Simulator {
    struct Node {
        var swim: SWIM
        var crashed = false
        /// This node's clock: the core is driven with its reading, not true time.
        var clock = SimClock()
    }

    var nodes: [Node] = []
    /// True time.
    var now = Instant(nanoseconds: 0)
    var rng: SeededRandom
    var net = SimNetwork<Packet>()
    var lossRate: Double {
        get { net.lossRate }
        set { net.lossRate = newValue }
    }
    /// Partition group per node; packets between groups are dropped. nil: one network.
    var groups: [Int]? {
        get { net.groups }
        set { net.partition(newValue) }
    }
    /// Packets whose encoding is larger are dropped, as UDP would (nil: no limit, no encoding cost).
    var maxDatagramBytes: Int? = nil
    var oversized = 0
    var tickEvery = Span.milliseconds(100)
    /// Called for every membership event: (observer index, event, true time).
    var observe: ((Int, MembershipEvent, Instant) -> Void)? = nil
    private var index: [String: Int] = [:]
    private(set) var packetsSent = 0

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    static func address(_ i: Int) -> String { "10.0.\(i / 256).\(i % 256):7946" }

    /// Extra delay on every packet node `i` receives, drawn per packet up to this bound: a
    /// CPU-starved process that reads its socket late.
    mutating func setSlowness(_ i: Int, _ bound: Span) { net.slowness[i] = bound }

    /// What node `i`'s clock reads now.
    func local(_ i: Int) -> Instant { nodes[i].clock.local(now) }

    @discardableResult
    mutating func addNode(settings: SWIMSettings = SWIMSettings(), tags: [String: String] = [:], clock: SimClock = SimClock()) -> Int {
        let i = nodes.count
        let swim = SWIM(name: "n\(i)", address: Self.address(i), tags: tags, settings: settings, seed: rng.next(), now: clock.local(now))
        nodes.append(Node(swim: swim, clock: clock))
        index[Self.address(i)] = i
        return i
    }

    mutating func join(_ i: Int, seeds: [Int]) {
        let effects = nodes[i].swim.join(seeds: seeds.map(Self.address), now: local(i))
        execute(i, effects)
    }

    mutating func leave(_ i: Int) { execute(i, nodes[i].swim.leave(now: local(i))) }

    mutating func crash(_ i: Int) { nodes[i].crashed = true }

    mutating func execute(_ from: Int, _ effects: [Effect]) {
        for e in effects {
            switch e {
            case .send(let p, let to):
                packetsSent += 1
                guard let dest = index[to] else { continue }
                if let limit = maxDatagramBytes, net.connected(from, dest), WireFormat.encode(p).count > limit { oversized += 1; continue }
                net.send(p, from: from, to: dest, now: now, rng: &rng)
            case .event(let ev):
                observe?(from, ev, now)
            }
        }
    }

    /// Runs until `end`, or until `stop` says so (checked after every tick round).
    mutating func run(until end: Instant, stop: ((Simulator) -> Bool)? = nil) {
        var nextTick = now
        while now < end {
            if let m = net.next(dueBy: nextTick) {
                now = max(now, m.at)
                guard !nodes[m.to].crashed else { continue }
                let effects = nodes[m.to].swim.receive(m.message, now: local(m.to))
                execute(m.to, effects)
                continue
            }
            now = nextTick
            for i in nodes.indices where !nodes[i].crashed {
                let effects = nodes[i].swim.tick(now: local(i))
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
