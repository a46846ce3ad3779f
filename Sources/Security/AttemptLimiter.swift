/// At most `burst` attempts per source, refilled at `perMinute`: joins are slow by nature, so a
/// source that tries faster is guessing or flooding. Pure: time comes in as milliseconds. At
/// most `maxSources` sources are remembered; past it the one heard from longest ago is forgotten.
public struct AttemptLimiter: Sendable {
    public let burst: Int
    public let perMinute: Int
    public let maxSources: Int
    /// Per source: attempts left, in 60,000ths (a millisecond adds `perMinute` of them, exactly),
    /// and when they were last counted.
    var buckets: [String: (units: Int64, atMs: Int64)] = [:]
    static let unitsPerAttempt: Int64 = 60_000

    public init(burst: Int = 30, perMinute: Int = 30, maxSources: Int = 4096) {
        self.burst = max(1, burst); self.perMinute = max(1, perMinute); self.maxSources = max(1, maxSources)
    }

    /// Whether `source` may try now; counts the attempt if so.
    public mutating func allow(_ source: String, nowMs: Int64) -> Bool {
        let full = Int64(burst) * Self.unitsPerAttempt
        var b = buckets[source] ?? (full, nowMs)
        let elapsed = max(0, min(nowMs - b.atMs, 3_600_000))  // a clock stepped back refills nothing
        b.units = min(full, b.units + elapsed * Int64(perMinute))
        b.atMs = max(b.atMs, nowMs)
        let allowed = b.units >= Self.unitsPerAttempt
        if allowed { b.units -= Self.unitsPerAttempt }
        if buckets[source] == nil, buckets.count >= maxSources, let oldest = buckets.min(by: { $0.value.atMs < $1.value.atMs })?.key {
            buckets[oldest] = nil
        }
        buckets[source] = b
        return allowed
    }
}
