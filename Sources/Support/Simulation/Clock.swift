import Determinism

/// A node's own clock under simulated time: off from true time by `offset`, and running fast or
/// slow by `driftPPM` parts per million. Cores take `now` from it, so a simulation can run one
/// node's idea of time ahead of another's, as NTP-disciplined hosts are (tens of ms apart) or as
/// a host with a dead clock battery is (seconds or more).
public struct SimClock: Sendable, Equatable {
    public var offset: Span
    /// Parts per million, bounded to ±100 000 (10 %), so the clock never runs backwards.
    public var driftPPM: Int64

    public init(offset: Span = Span(nanoseconds: 0), driftPPM: Int64 = 0) {
        self.offset = offset
        self.driftPPM = max(-100_000, min(100_000, driftPPM))
    }

    /// What this node's clock reads at true time `t`.
    public func local(_ t: Instant) -> Instant {
        let drift = Double(t.nanoseconds) * Double(driftPPM) / 1e6
        return Instant(nanoseconds: t.nanoseconds + offset.nanoseconds + Int64(drift))
    }

    /// A clock off by up to ±`maxOffset` and drifting by up to ±`maxDriftPPM`.
    public static func random(maxOffset: Span, maxDriftPPM: Int64, rng: inout SeededRandom) -> SimClock {
        let o = maxOffset.nanoseconds > 0 ? Int64(rng.next() % UInt64(2 * maxOffset.nanoseconds + 1)) - maxOffset.nanoseconds : 0
        let d = maxDriftPPM > 0 ? Int64(rng.next() % UInt64(2 * maxDriftPPM + 1)) - maxDriftPPM : 0
        return SimClock(offset: Span(nanoseconds: o), driftPPM: d)
    }
}
