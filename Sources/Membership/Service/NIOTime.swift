import Gossip
import NIOCore

extension TimeAmount {
    /// NIO's form of a settings duration (settings hold `Span`, the cores' type, throughout).
    public init(_ span: Span) { self = .nanoseconds(span.nanoseconds) }
}

extension Instant {
    /// The cores' form of a monotonic NIO deadline.
    public init(_ deadline: NIODeadline) { self.init(nanoseconds: Int64(deadline.uptimeNanoseconds)) }
}
