/// Refuses a gossip datagram seen before. Each sealed datagram carries its sender's wall-clock
/// stamp and a random nonce, both authenticated by the seal, so a recorded datagram sent again
/// has the same stamp and nonce and cannot be altered into a new one. The window remembers the
/// nonce ids of every datagram stamped within `maxClockSkew` of this node's wall clock and
/// refuses anything older (or newer) than that: a replay is either remembered or too old.
///
/// A node starts with nothing remembered, so it also refuses every datagram stamped before it
/// started (a replay across its restart). Memory is bounded: past `capacity` ids the oldest
/// second is forgotten and nothing stamped before its end is accepted any more. Wall clocks come
/// in as arguments; `floor` only rises, so a clock stepped back never reopens a forgotten second.
public struct ReplayWindow: Sendable {
    public enum Verdict: Sendable, Equatable {
        case fresh
        /// Its id is remembered: the same datagram again.
        case replayed
        /// Stamped before this node started, or in a second forgotten at the bound.
        case stale
        /// Stamped over `maxClockSkew` away from this node's wall clock.
        case clockSkew
    }

    /// How far a member's wall clock may be from ours (NTP keeps clocks far closer).
    public static let maxClockSkew = Span.seconds(60)
    /// Ids remembered at most: about 2,000 datagrams a second over the two minutes the skew spans.
    public static let defaultCapacity = 1 << 18
    static let second: Int64 = 1_000_000_000

    let skew: Int64
    let capacity: Int
    /// Nothing stamped before it is accepted.
    public private(set) var floor: Int64
    /// Remembered ids by the second of their stamp, oldest second first.
    var seconds: [(second: Int64, ids: Set<UInt64>)] = []
    public private(set) var remembered = 0

    public init(startedAt wallClock: Int64, capacity: Int = Self.defaultCapacity, maxClockSkew: Span = Self.maxClockSkew) {
        floor = wallClock
        self.capacity = max(1, capacity)
        skew = maxClockSkew.nanoseconds
    }

    /// Whether a datagram with this nonce id and stamp may be read; a fresh one is remembered.
    public mutating func admit(id: UInt64, stamp: Int64, wallClock now: Int64) -> Verdict {
        // `now` is this node's clock (far from the limits); `stamp` comes from the wire and is only
        // compared, never used in arithmetic.
        let oldest = now - skew, newest = now + skew
        guard stamp >= oldest, stamp <= newest else { return .clockSkew }
        raiseFloor(to: oldest)
        guard stamp >= floor else { return .stale }
        let s = Self.secondOf(stamp)
        let i = position(of: s)
        if i < seconds.count, seconds[i].second == s {
            guard seconds[i].ids.insert(id).inserted else { return .replayed }
        } else {
            seconds.insert((s, [id]), at: i)
        }
        remembered += 1
        while remembered > capacity, let first = seconds.first {
            raiseFloor(to: (first.second + 1) * Self.second)
        }
        return .fresh
    }

    /// Forgets every second that ends at or before `t`: nothing stamped in it is accepted any more.
    mutating func raiseFloor(to t: Int64) {
        guard t > floor else { return }
        floor = t
        while let first = seconds.first, (first.second + 1) * Self.second <= t {
            remembered -= first.ids.count
            seconds.removeFirst()
        }
    }

    static func secondOf(_ t: Int64) -> Int64 { t >= 0 ? t / second : -((-t + second - 1) / second) }

    /// Where second `s` is or belongs; stamps mostly arrive in order, so searched from the end.
    func position(of s: Int64) -> Int {
        var i = seconds.count
        while i > 0, seconds[i - 1].second >= s { i -= 1 }
        return i
    }
}
