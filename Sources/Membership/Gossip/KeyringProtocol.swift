import Support

/// A keyring operation, on one node or on every live member.
public enum KeyringOp: UInt8, Sendable {
    case list = 0, install = 1, use = 2, remove = 3
    public var name: String { "\(self)" }
}

/// Keyring changes for the whole cluster in one command (Serf's `serf keys`), as pure cores: the
/// node asked sends the request to every live member over the gossip socket, sealed like any
/// gossip packet (`KeyringAsk`), and each member answers once per request id (`KeyringResponder`).
///
///     message  marker:u8=0xC2 kind:u8 (1 request, 2 reply) id:u64 sentAt:i64 from:str body
///     request  op:u8 key:blob (empty for list)
///     reply    ok:u8 error:str count:u8 key:blob* (the replier's keys, primary first)
///
/// The marker shares the byte after the seal with the LZ4 marker and the SWIM wire format's
/// version (1), so the three never mix.
public struct KeyringMessage: Equatable, Sendable {
    public enum Body: Equatable, Sendable {
        case request(op: KeyringOp, key: [UInt8])
        case reply(error: String?, keys: [[UInt8]])
    }
    public var id: UInt64
    /// The sender's wall clock, in nanoseconds since the epoch.
    public var sentAt: Int64
    public var from: String
    public var body: Body

    public static let marker: UInt8 = 0xC2

    public init(id: UInt64, sentAt: Int64, from: String, body: Body) {
        self.id = id; self.sentAt = sentAt; self.from = from; self.body = body
    }

    public func encode() -> [UInt8] {
        var w = BinaryWriter()
        w.u8(Self.marker)
        switch body {
        case .request: w.u8(1)
        case .reply: w.u8(2)
        }
        w.u64(id); w.i64(sentAt); w.string(from)
        switch body {
        case .request(let op, let key):
            w.u8(op.rawValue); w.blob(key)
        case .reply(let error, let keys):
            w.u8(error == nil ? 1 : 0); w.string(error ?? "")
            w.u8(UInt8(min(keys.count, 255)))
            for k in keys.prefix(255) { w.blob(k) }
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> KeyringMessage {
        var r = BinaryReader(bytes)
        guard try r.u8() == marker else { throw DecodeError("not a keyring message") }
        let kind = try r.u8()
        let id = try r.u64(), sentAt = try r.i64(), from = try r.string(max: 255)
        let body: Body
        switch kind {
        case 1:
            guard let op = KeyringOp(rawValue: try r.u8()) else { throw DecodeError("unknown keyring operation") }
            body = .request(op: op, key: try r.blob(max: 64))
        case 2:
            let ok = try r.u8() == 1
            let error = try r.string(max: 1024)
            var keys: [[UInt8]] = []
            for _ in 0..<(try r.u8()) { keys.append(try r.blob(max: 64)) }
            body = .reply(error: ok ? nil : error, keys: keys)
        default:
            throw DecodeError("unknown keyring message kind \(kind)")
        }
        try r.expectEnd()
        return KeyringMessage(id: id, sentAt: sentAt, from: from, body: body)
    }
}

/// The asking side of one cluster-wide keyring operation: requests to every target, sent again
/// to the silent every `resendEvery`, until each has answered or the deadline passes.
public struct KeyringAsk: Sendable {
    public struct Answer: Sendable, Equatable {
        public var error: String?
        /// The answerer's keys after the operation, primary first (empty on error).
        public var keys: [[UInt8]]
        public init(error: String?, keys: [[UInt8]]) { self.error = error; self.keys = keys }
    }
    public enum Command: Sendable, Equatable {
        /// Send these bytes (seal them first) to this gossip address.
        case send([UInt8], to: String)
        /// Every target answered, or the deadline passed: report `answers` and `pending`.
        case finished
    }

    public static let resendEvery = Span.milliseconds(250)

    public let op: KeyringOp
    public let key: [UInt8]
    public let id: UInt64
    public let me: String
    /// Members asked, this node included.
    public let nodes: Int
    /// Targets that have not answered: name → gossip address.
    public private(set) var pending: [String: String]
    public private(set) var answers: [String: Answer]
    public private(set) var isFinished = false
    let deadline: Instant
    private var resendAt: Instant

    /// `mine` is this node's own answer (its keys after its own change, made first).
    public init(op: KeyringOp, key: [UInt8], id: UInt64, me: String, mine: Answer, targets: [String: String], now: Instant, timeout: Span) {
        self.op = op; self.key = key; self.id = id; self.me = me
        pending = targets.filter { $0.key != me }
        nodes = pending.count + 1
        answers = [me: mine]
        deadline = now + timeout
        resendAt = now + Self.resendEvery
    }

    /// When to call `tick` next; nil once finished.
    public var wakeAt: Instant? { isFinished ? nil : min(resendAt, deadline) }

    public mutating func start(wallClock: Int64) -> [Command] { requests(wallClock) }

    public mutating func tick(now: Instant, wallClock: Int64) -> [Command] {
        guard !isFinished else { return [] }
        if now >= deadline { return finish() }
        guard now >= resendAt else { return [] }
        resendAt = now + Self.resendEvery
        return requests(wallClock)
    }

    /// A reply; one not for this operation, or from a member not asked or already answered, is ignored.
    public mutating func receive(_ m: KeyringMessage) -> [Command] {
        guard !isFinished, m.id == id, case .reply(let error, let keys) = m.body,
            pending.removeValue(forKey: m.from) != nil
        else { return [] }
        answers[m.from] = Answer(error: error, keys: keys)
        return pending.isEmpty ? finish() : []
    }

    private mutating func requests(_ wallClock: Int64) -> [Command] {
        if pending.isEmpty { return finish() }
        let bytes = KeyringMessage(id: id, sentAt: wallClock, from: me, body: .request(op: op, key: key)).encode()
        return pending.sorted { $0.key < $1.key }.map { .send(bytes, to: $0.value) }
    }

    private mutating func finish() -> [Command] {
        isFinished = true
        return [.finished]
    }
}

/// The answering side: each request id is applied once and its reply remembered, so a resend (or
/// a duplicate) gets the first reply again. A request is refused when its `sentAt` is over
/// `maxClockSkew` from this node's wall clock. Ids are remembered for longer than twice that
/// skew, so a captured request replayed after it is forgotten is always too old: at first receipt
/// its `sentAt` was at most the skew behind, and more than twice the skew has passed since.
public struct KeyringResponder: Sendable {
    public static let maxClockSkew = Span.seconds(60)
    public static let rememberFor = Span.seconds(125)
    /// Past it a new request is refused and counted (never an old one forgotten early, which
    /// would reopen the replay window). Keyring changes are an operator's, a few a day.
    public static let maxRemembered = 1_024

    public enum Decision: Sendable, Equatable {
        /// Answered before: send this reply again.
        case again([UInt8])
        /// Dropped; the reason is the metric's label.
        case refuse(reason: String)
        /// New: apply the operation, then call `answer`.
        case apply(KeyringOp, key: [UInt8])
    }

    private var seen: [UInt64: (expires: Instant, reply: [UInt8])] = [:]
    public var remembered: Int { seen.count }

    public init() {}

    public mutating func receive(_ m: KeyringMessage, now: Instant, wallClock: Int64) -> Decision {
        guard case .request(let op, let key) = m.body else { return .refuse(reason: "keyring_unexpected_reply") }
        seen = seen.filter { $0.value.expires > now }
        if let s = seen[m.id] { return .again(s.reply) }
        guard seen.count < Self.maxRemembered else { return .refuse(reason: "keyring_busy") }
        // Magnitude bounded first: sentAt comes from the wire.
        let skew = wallClock.subtractingReportingOverflow(m.sentAt)
        guard !skew.overflow, skew.partialValue.magnitude <= UInt64(Self.maxClockSkew.nanoseconds) else {
            return .refuse(reason: "keyring_clock_skew")
        }
        return .apply(op, key: key)
    }

    /// The reply to request `m` after applying it (nil error: it succeeded), remembered for resends.
    public mutating func answer(_ m: KeyringMessage, me: String, error: String?, keys: [[UInt8]], now: Instant, wallClock: Int64) -> [UInt8] {
        let reply = KeyringMessage(id: m.id, sentAt: wallClock, from: me, body: .reply(error: error, keys: error == nil ? keys : [])).encode()
        seen[m.id] = (now + Self.rememberFor, reply)
        return reply
    }
}
