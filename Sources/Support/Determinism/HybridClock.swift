/// A hybrid logical clock (Kulkarni et al. 2014): timestamps that follow physical time when
/// clocks agree, never go backwards on one node, and order every write after what its writer
/// had seen. 48 bits of Unix milliseconds, 16 bits of logical counter.
///
/// Sans-IO: the caller passes physical time in. A remote timestamp more than `maxAhead` past
/// this node's physical clock is refused, so one peer with a clock far in the future cannot drag
/// every node's versions there (and make later writes lose to it).
public struct HybridClock: Sendable {
    public struct Timestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
        public var raw: UInt64
        public init(raw: UInt64) { self.raw = raw }
        public init(ms: UInt64, logical: UInt16) { raw = ms << 16 | UInt64(logical) }
        public var ms: UInt64 { raw >> 16 }
        public var logical: UInt16 { UInt16(truncatingIfNeeded: raw) }
        public static func < (a: Timestamp, b: Timestamp) -> Bool { a.raw < b.raw }
        public var description: String { "\(ms).\(logical)" }
    }

    public private(set) var last = Timestamp(raw: 0)
    public let maxAheadMs: UInt64
    public init(maxAheadMs: UInt64 = 60_000) { self.maxAheadMs = maxAheadMs }

    static let maxMs: UInt64 = (1 << 48) - 1

    /// A timestamp for a local event at physical time `nowMs`, above every one given or seen.
    public mutating func now(_ nowMs: Int64) -> Timestamp {
        let physical = UInt64(clamping: max(0, nowMs)) & Self.maxMs
        if physical > last.ms {
            last = Timestamp(ms: physical, logical: 0)
        } else {
            // Physical time stands still or went back: count on; past 65,535 in one millisecond the
            // clock moves a millisecond ahead of physical time (as HLC's bounded drift allows).
            last = Timestamp(raw: last.raw + 1)
        }
        return last
    }

    /// Takes in a timestamp from a peer (before `now` for a write that follows it). False, and
    /// nothing changed, when it is more than `maxAheadMs` ahead of physical time `nowMs`.
    @discardableResult
    public mutating func observe(_ remote: Timestamp, nowMs: Int64) -> Bool {
        let physical = UInt64(clamping: max(0, nowMs))
        guard remote.ms <= physical + maxAheadMs else { return false }
        if remote > last { last = remote }
        return true
    }
}
