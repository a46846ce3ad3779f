@_exported import Determinism

/// SWIM incarnation number: only the member itself raises it (to refute suspicion or change tags).
public struct Incarnation: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (a: Incarnation, b: Incarnation) -> Bool { a.value < b.value }
    /// The highest incarnation a decoder accepts. Only the member raises its own, by one per
    /// refutation or tag change, so honest members never come near it; bounding what peers may
    /// say keeps `refute` (one past what was heard) from overflowing.
    public static let limit = Incarnation(1 << 62)
    /// One more, saturating far above `limit` (never reached: see `limit`).
    public var next: Incarnation { Incarnation(value < UInt64.max ? value + 1 : value) }
    public var description: String { "\(value)" }
}

/// A member's state as the local node believes it.
public enum MemberStatus: UInt8, Sendable, CustomStringConvertible, CaseIterable {
    case alive = 0, suspect = 1, dead = 2, left = 3
    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }
}

/// One member of the cluster. `address` is "host:port" of its gossip socket.
public struct Member: Equatable, Sendable {
    public var name: String
    public var address: String
    public var status: MemberStatus
    public var incarnation: Incarnation
    public var tags: [String: String]
    /// When the status last changed, on the local clock.
    public var since: Instant
}

/// What the rest of the node hears from membership.
public enum MembershipEvent: Equatable, Sendable {
    case joined(Member)
    case updated(Member)
    case suspected(Member)
    case failed(Member)
    case left(Member)
}
