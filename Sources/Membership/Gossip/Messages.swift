/// A membership fact spread by piggybacking (SWIM §4.1): the newest fact about a member wins.
public enum Rumor: Equatable, Sendable {
    case alive(name: String, address: String, incarnation: Incarnation, tags: [String: String])
    case suspect(name: String, incarnation: Incarnation, from: String)
    case dead(name: String, incarnation: Incarnation, from: String)
    /// Graceful leave: only the member itself says this.
    case left(name: String, incarnation: Incarnation)

    public var subject: String {
        switch self {
        case .alive(let n, _, _, _), .suspect(let n, _, _), .dead(let n, _, _), .left(let n, _): n
        }
    }
}

/// The full state of one member, exchanged by push-pull.
public struct MemberState: Equatable, Sendable {
    public var name: String
    public var address: String
    public var status: MemberStatus
    public var incarnation: Incarnation
    public var tags: [String: String]
}

/// The protocol messages. `seq` ties acks and nacks to the probe that asked for them.
public enum Message: Equatable, Sendable {
    /// Direct probe of `target` (the receiver checks it is the one meant).
    case ping(seq: UInt32, target: String)
    /// Ask the receiver to probe `target` at `targetAddress` on the sender's behalf (SWIM §3.2).
    case pingRequest(seq: UInt32, target: String, targetAddress: String)
    case ack(seq: UInt32)
    /// Lifeguard: the intermediary could not reach the target in time; tells the prober its own
    /// path is fine, so a missing indirect ack is not its own slowness.
    case nack(seq: UInt32)
    /// Anti-entropy: full state; `isReply` stops ping-pong, `isJoin` marks a first contact.
    /// A state too big for one datagram goes in parts: the first carries the flags, the rest
    /// have `isPart` set and are only merged (no reply, no join bookkeeping).
    case pushPull(states: [MemberState], isReply: Bool, isJoin: Bool, isPart: Bool = false)
    /// Carries only rumors.
    case gossip
}

/// One datagram: who sent it, the message, and piggybacked rumors.
public struct Packet: Equatable, Sendable {
    public var from: String
    public var fromAddress: String
    public var message: Message
    public var rumors: [Rumor]

    public init(from: String, fromAddress: String, message: Message, rumors: [Rumor]) {
        self.from = from; self.fromAddress = fromAddress; self.message = message; self.rumors = rumors
    }
}
