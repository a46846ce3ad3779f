import Testing

@testable import Gossip

/// The window that drops gossip datagrams sent again, driven by seeded streams of datagrams
/// (fresh ones delayed and reordered, recorded ones replayed at any later time). Each failure
/// names its seed.
@Suite struct ReplayWindowTests {
    static let second: Int64 = 1_000_000_000
    static let start: Int64 = 1_800_000_000 * second

    /// A replay is never read, however late it comes and however full the window is; and while
    /// the window is under its bound, every datagram stamped after start and within the skew is.
    @Test(arguments: 0..<40)
    func aDatagramIsReadAtMostOnce(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let capacity = seed % 2 == 0 ? 100_000 : 300  // odd seeds overflow the bound again and again
        var window = ReplayWindow(startedAt: Self.start, capacity: capacity)
        var now = Self.start, read = Set<UInt64>(), recorded: [(id: UInt64, stamp: Int64)] = []
        for _ in 0..<20_000 {
            now += Int64.random(in: 0...(20_000_000), using: &rng)  // up to 20 ms between arrivals
            if recorded.isEmpty || Int.random(in: 0..<3, using: &rng) > 0 {
                // Fresh: stamped by a sender whose clock is up to 5 s off, delayed up to 50 ms.
                let stamp = now + Int64.random(in: -(5 * Self.second)...(5 * Self.second), using: &rng) - Int64.random(in: 0...50_000_000, using: &rng)
                let id = rng.next()
                let v = window.admit(id: id, stamp: stamp, wallClock: now)
                if capacity > 20_000, stamp >= Self.start { #expect(v == .fresh, "seed \(seed): a fresh datagram was refused as \(v)") }
                if v == .fresh { read.insert(id) }
                recorded.append((id, stamp))
            } else {
                let r = recorded[Int.random(in: 0..<recorded.count, using: &rng)]
                let v = window.admit(id: r.id, stamp: r.stamp, wallClock: now)
                #expect(v != .fresh || !read.contains(r.id), "seed \(seed): a replay was read")
                if v == .fresh { read.insert(r.id) }
            }
            #expect(window.remembered <= capacity, "seed \(seed): \(window.remembered) remembered over the bound \(capacity)")
        }
    }

    @Test func datagramsFromBeforeStartOrFarFromOurClockAreRefused() {
        var w = ReplayWindow(startedAt: Self.start)
        #expect(w.admit(id: 1, stamp: Self.start - 1, wallClock: Self.start + 1) == .stale, "sent before this node started")
        #expect(w.admit(id: 2, stamp: Self.start + 61 * Self.second, wallClock: Self.start) == .clockSkew)
        #expect(w.admit(id: 3, stamp: Self.start + 10, wallClock: Self.start + 61 * Self.second) == .clockSkew)
        #expect(w.admit(id: 4, stamp: .min, wallClock: Self.start) == .clockSkew)
        #expect(w.admit(id: 5, stamp: .max, wallClock: Self.start) == .clockSkew)
        #expect(w.admit(id: 6, stamp: Self.start + 59 * Self.second, wallClock: Self.start) == .fresh, "a minute of skew is allowed")
        #expect(w.admit(id: 6, stamp: Self.start + 59 * Self.second, wallClock: Self.start + Self.second) == .replayed)
    }

    /// The oldest second is forgotten at the bound; nothing stamped in it is read after that,
    /// and a wall clock stepped back does not bring it back.
    @Test func forgottenSecondsStayClosed() {
        var w = ReplayWindow(startedAt: Self.start, capacity: 4)
        for i in 0..<4 { #expect(w.admit(id: UInt64(i), stamp: Self.start + Int64(i) * Self.second, wallClock: Self.start + 5 * Self.second) == .fresh) }
        #expect(w.admit(id: 9, stamp: Self.start + 4 * Self.second, wallClock: Self.start + 5 * Self.second) == .fresh)
        #expect(w.remembered == 4)
        #expect(w.floor == Self.start + Self.second)
        #expect(w.admit(id: 0, stamp: Self.start, wallClock: Self.start) == .stale, "forgotten, so refused even with the clock stepped back")
        #expect(w.admit(id: 1, stamp: Self.start + Self.second, wallClock: Self.start + 6 * Self.second) == .replayed)
        // Time passing forgets too: two minutes on, all of it is past the skew.
        #expect(w.admit(id: 1, stamp: Self.start + Self.second, wallClock: Self.start + 120 * Self.second) == .clockSkew)
        #expect(w.admit(id: 10, stamp: Self.start + 119 * Self.second, wallClock: Self.start + 120 * Self.second) == .fresh)
        #expect(w.remembered == 1)
    }
}
