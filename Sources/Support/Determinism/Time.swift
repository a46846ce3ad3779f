/// A point in time in nanoseconds, from whatever clock the shell or simulator drives the core with.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Span) -> Instant { Instant(nanoseconds: a.nanoseconds + d.nanoseconds) }
    public static func - (a: Instant, b: Instant) -> Span { Span(nanoseconds: a.nanoseconds - b.nanoseconds) }
    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

/// A length of time in nanoseconds.
public struct Span: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func milliseconds(_ ms: Int64) -> Span { Span(nanoseconds: ms * 1_000_000) }
    public static func seconds(_ s: Double) -> Span { Span(nanoseconds: Int64(s * 1e9)) }
    public static func < (a: Span, b: Span) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func * (a: Span, k: Int) -> Span { Span(nanoseconds: a.nanoseconds * Int64(k)) }
    public static func * (a: Span, k: Double) -> Span { Span(nanoseconds: Int64(Double(a.nanoseconds) * k)) }
    public static func + (a: Span, b: Span) -> Span { Span(nanoseconds: a.nanoseconds + b.nanoseconds) }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var description: String { "\(seconds)s" }
}
