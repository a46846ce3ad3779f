import Determinism

/// The simulation kit every core's tests share: a network, clocks, a disk and a seed runner, all
/// driven by one `SeededRandom`, so a failing run replays exactly from its printed seed. Nothing
/// here does I/O or reads a real clock; the binary does not link it.
///
/// A simulated network between endpoints numbered 0..<n: every message sent is lost, delayed,
/// duplicated or dropped at a partition by draws from the caller's random source; reordering
/// comes from the random delays. Messages come out in delivery-time order, ties in send order.
public struct SimNetwork<Message> {
    /// Chance (0...1) that a message is lost.
    public var lossRate = 0.0
    /// Chance (0...1) that a message is delivered twice (each copy with its own delay).
    public var duplicateRate = 0.0
    /// Delay drawn per copy, uniformly in this range.
    public var delayMin = Span.milliseconds(1)
    public var delayMax = Span.milliseconds(5)
    /// Partition group per endpoint; messages between groups are dropped. nil: one network.
    public var groups: [Int]? = nil
    /// Extra delay per receiving endpoint, drawn per message up to this bound: a CPU-starved
    /// process that reads its socket late.
    public var slowness: [Int: Span] = [:]

    private var queue = EventQueue<Delivery>()

    public struct Delivery {
        public var at: Instant
        public var from: Int
        public var to: Int
        public var message: Message
    }

    public init() {}

    /// When the next message is due, if any.
    public var nextAt: Instant? { queue.peek?.at }

    /// Partitions the endpoints into `groups` (one group number per endpoint), or heals it (nil).
    public mutating func partition(_ groups: [Int]?) { self.groups = groups }

    public func connected(_ a: Int, _ b: Int) -> Bool {
        guard let g = groups, a < g.count, b < g.count else { return true }
        return g[a] == g[b]
    }

    /// Sends `message` from `from` to `to` at `now`; returns how many copies are in flight (0: lost).
    @discardableResult
    public mutating func send(_ message: Message, from: Int, to: Int, now: Instant, rng: inout SeededRandom) -> Int {
        guard connected(from, to) else { return 0 }
        if lossRate > 0, rng.chance(lossRate) { return 0 }
        let copies = duplicateRate > 0 && rng.chance(duplicateRate) ? 2 : 1
        for _ in 0..<copies {
            var delay = rng.span(delayMin, delayMax)
            if let slow = slowness[to], slow.nanoseconds > 0 { delay = delay + rng.span(Span(nanoseconds: 0), slow) }
            queue.push(Delivery(at: now + delay, from: from, to: to, message: message), at: now + delay)
        }
        return copies
    }

    /// The next message due at or before `deadline`, removed from the network. A message sent
    /// across a partition made while it was in flight is dropped here.
    public mutating func next(dueBy deadline: Instant) -> Delivery? {
        while let head = queue.peek, head.at <= deadline {
            let d = queue.pop()!
            if connected(d.from, d.to) { return d }
        }
        return nil
    }
}

extension SeededRandom {
    /// True with probability `p` (0...1), at a resolution of one in a million.
    public mutating func chance(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1e6 < p }

    /// Uniform in [lo, hi) (lo when the range is empty).
    public mutating func span(_ lo: Span, _ hi: Span) -> Span {
        let width = hi.nanoseconds - lo.nanoseconds
        guard width > 0 else { return lo }
        return Span(nanoseconds: lo.nanoseconds + Int64(next() % UInt64(width)))
    }

    /// Uniform in 0..<n (0 when n ≤ 0).
    public mutating func below(_ n: Int) -> Int { n > 0 ? Int(next() % UInt64(n)) : 0 }
}

/// A binary min-heap ordered by time, ties in insertion order: the simulators' event queue.
public struct EventQueue<Element> {
    private var items: [(at: Instant, order: UInt64, element: Element)] = []
    private var pushed: UInt64 = 0

    public init() {}
    public var peek: (at: Instant, element: Element)? { items.first.map { ($0.at, $0.element) } }

    private func less(_ a: Int, _ b: Int) -> Bool {
        items[a].at == items[b].at ? items[a].order < items[b].order : items[a].at < items[b].at
    }

    public mutating func push(_ x: Element, at: Instant) {
        pushed += 1
        items.append((at, pushed, x))
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(i, p) else { break }
            items.swapAt(i, p); i = p
        }
    }

    public mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && less(l, m) { m = l }
            if r < items.count && less(r, m) { m = r }
            if m == i { break }
            items.swapAt(i, m); i = m
        }
        return top.element
    }
}
