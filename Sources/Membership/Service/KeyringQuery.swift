import ChunkStore
import Gossip
import NIOCore
import Security
import Support

/// A keyring operation, on one node or on every live member.
public enum KeyringOp: UInt8, Sendable {
    case list = 0, install = 1, use = 2, remove = 3
    public var name: String { "\(self)" }
}

/// Keyring changes for the whole cluster in one command (Serf's `serf keys`): the node asked
/// sends the request to every live member over the gossip socket, sealed like any gossip packet,
/// and collects the replies, resending to the silent every 250 ms until a deadline.
///
///     message  marker:u8=0xC2 kind:u8 (1 request, 2 reply) id:u64 sentAt:i64 from:str body
///     request  op:u8 key:blob (empty for list)
///     reply    ok:u8 error:str count:u8 key:blob* (the replier's keys, primary first)
///
/// The marker shares the byte after the seal with the LZ4 marker and the SWIM wire format's
/// version (1), so the three never mix. A request is refused when its wall-clock time `sentAt`
/// is over a minute from the receiver's, and its id is remembered for two minutes, so a captured
/// request cannot be replayed later; a repeated id (a resend) gets the first reply again.
struct KeyringMessage: Equatable {
    enum Body: Equatable {
        case request(op: KeyringOp, key: [UInt8])
        case reply(error: String?, keys: [[UInt8]])
    }
    var id: UInt64
    var sentAt: Int64
    var from: String
    var body: Body

    static let marker: UInt8 = 0xC2

    func encode() -> [UInt8] {
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

    static func decode(_ bytes: [UInt8]) throws -> KeyringMessage {
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

    static let maxClockSkew: Int64 = 60_000_000_000
    /// Requests remembered (for their two minutes) so a resend gets its first reply again; past
    /// it a new request is dropped and counted. Keyring changes are an operator's, a few a day.
    static let maxRemembered = 1_024
}

/// What every live member answered to one keyring operation.
public struct KeyringRollout: Codable, Sendable, Equatable {
    /// One key and how many answering members hold it and seal with it.
    public struct KeyCount: Codable, Sendable, Equatable {
        public var key: String
        public var nodes: Int
        public var primary: Int
    }
    public var op: String
    /// Members asked, this node included.
    public var nodes: Int
    public var ok: [String]
    /// Member name → why it refused.
    public var failed: [String: String]
    /// Members that did not answer before the deadline.
    public var noReply: [String]
    /// Every key the members that said yes hold, with how many hold it and seal with it.
    public var keys: [KeyCount]

    enum CodingKeys: String, CodingKey {
        case op, nodes, ok, failed, noReply = "no_reply", keys
    }
}

/// Why a cluster-wide change was not started (nothing changed anywhere).
public struct KeyringRefusal: Error, CustomStringConvertible {
    public var description: String
}

extension Keyring {
    mutating func apply(_ op: KeyringOp, _ key: [UInt8]) throws(KeyringError) {
        switch op {
        case .list: break
        case .install: install(key)
        case .use: try use(key)
        case .remove: try remove(key)
        }
    }
}

extension GossipService {
    /// A cluster-wide operation in flight (on the loop).
    final class Rollout {
        let op: KeyringOp
        let key: [UInt8]
        let id: UInt64
        var pending: [String: String]  // name → gossip address
        var answers: [String: (error: String?, keys: [[UInt8]])] = [:]
        /// Members asked, this node included.
        let nodes: Int
        let promise: EventLoopPromise<KeyringRollout>
        var resend: RepeatedTask?
        var deadline: Scheduled<Void>?

        init(op: KeyringOp, key: [UInt8], id: UInt64, targets: [String: String], promise: EventLoopPromise<KeyringRollout>) {
            self.op = op; self.key = key; self.id = id; pending = targets; nodes = targets.count + 1; self.promise = promise
        }
    }

    static let keyringResendEvery = TimeAmount.milliseconds(250)

    /// Runs `op` on this node and every live member. `use` first checks that every live member
    /// holds the key and `remove` that none seals with it; either refuses, changing nothing,
    /// when one does not or does not answer, because a member that cannot open its peers'
    /// packets, or whose packets no peer can open, soon looks dead to the rest.
    public func keyringEverywhere(_ op: KeyringOp, key: [UInt8], timeout: TimeAmount = .seconds(2)) async throws -> KeyringRollout {
        if op == .use || op == .remove {
            let listing = try await rollout(.list, key: [], timeout: timeout)
            if !listing.noReply.isEmpty {
                throw KeyringRefusal(description: "no answer from \(listing.noReply.sorted().joined(separator: ", ")); nothing changed (retry, or use --local on each node)")
            }
            let k = Base64.encode(key)
            let count = listing.keys.first { $0.key == k }
            if op == .use, count?.nodes != listing.nodes {
                throw KeyringRefusal(description: "only \(count?.nodes ?? 0) of \(listing.nodes) members hold that key: install it first; nothing changed")
            }
            if op == .remove, let c = count, c.primary > 0 {
                throw KeyringRefusal(description: "\(c.primary) of \(listing.nodes) members still seal with that key: use another key first; nothing changed")
            }
        }
        // The local change first: if it is refused (say, an unknown key), nobody else is asked.
        if op != .list { _ = try await changeKeyring { try $0.apply(op, key) } }
        return try await rollout(op, key: key, timeout: timeout)
    }

    func rollout(_ op: KeyringOp, key: [UInt8], timeout: TimeAmount) async throws -> KeyringRollout {
        try await loop.flatSubmit {
            let targets = Dictionary(self.core.members.filter { $0.name != self.core.name && ($0.status == .alive || $0.status == .suspect) }
                .map { ($0.name, $0.address) }, uniquingKeysWith: { a, _ in a })
            let r = Rollout(op: op, key: key, id: UInt64.random(in: 1...UInt64.max), targets: targets, promise: self.loop.makePromise())
            r.answers[self.core.name] = (nil, self.keyring.keys)
            self.rollouts[r.id] = r
            self.sendRequests(r)
            r.resend = self.loop.scheduleRepeatedTask(initialDelay: Self.keyringResendEvery, delay: Self.keyringResendEvery) { _ in self.sendRequests(r) }
            r.deadline = self.loop.scheduleTask(in: timeout) { self.finish(r) }
            if r.pending.isEmpty { self.finish(r) }
            return r.promise.futureResult
        }.get()
    }

    func sendRequests(_ r: Rollout) {
        let m = KeyringMessage(id: r.id, sentAt: Self.wallClock(), from: core.name, body: .request(op: r.op, key: r.key))
        let bytes = m.encode()
        for address in r.pending.values { send(bytes, to: address, kind: "keyring") }
    }

    func finish(_ r: Rollout) {
        guard rollouts.removeValue(forKey: r.id) != nil else { return }
        r.resend?.cancel()
        r.deadline?.cancel()
        var counts: [[UInt8]: (nodes: Int, primary: Int)] = [:]
        var order: [[UInt8]] = []
        for (_, a) in r.answers.sorted(by: { $0.key < $1.key }) where a.error == nil {
            for (i, k) in a.keys.enumerated() {
                if counts[k] == nil { order.append(k) }
                counts[k, default: (0, 0)].nodes += 1
                if i == 0 { counts[k, default: (0, 0)].primary += 1 }
            }
        }
        r.promise.succeed(KeyringRollout(
            op: r.op.name, nodes: r.nodes,
            ok: r.answers.filter { $0.value.error == nil }.map(\.key).sorted(),
            failed: r.answers.compactMapValues(\.error),
            noReply: r.pending.keys.sorted(),
            keys: order.map { KeyringRollout.KeyCount(key: Base64.encode($0), nodes: counts[$0]!.nodes, primary: counts[$0]!.primary) }))
    }

    /// A keyring message arrived (already opened by the keyring, so from a key holder).
    func receiveKeyring(_ m: KeyringMessage, from sender: SocketAddress) {
        switch m.body {
        case .request(let op, let key):
            let now = Self.now()
            keyringSeen = keyringSeen.filter { $0.value.expires > now }
            if let seen = keyringSeen[m.id] {
                send(seen.reply, to: sender, kind: "keyring")
                return
            }
            guard keyringSeen.count < KeyringMessage.maxRemembered else {
                metrics.drop("keyring_busy")
                return
            }
            guard abs(Self.wallClock() - m.sentAt) <= KeyringMessage.maxClockSkew else {
                metrics.drop("keyring_clock_skew")
                logger.warning("keyring request from \(m.from) dropped: its clock is over a minute from ours (or it is a replay)")
                return
            }
            var failure: String?
            do {
                let before = keyring
                if try applyKeyring({ try $0.apply(op, key) }) != before { logger.notice("keyring \(op.name) from \(m.from)") }
            } catch {
                failure = "\(error)"
            }
            // Sealed with the keyring as it is now: after `use`, with the new primary, which the
            // asking node holds (it checked that everyone does, itself included).
            let r = KeyringMessage(id: m.id, sentAt: Self.wallClock(), from: core.name,
                                   body: .reply(error: failure, keys: failure == nil ? keyring.keys : []))
            let bytes = r.encode()
            keyringSeen[m.id] = (now + Span.seconds(120), bytes)
            send(bytes, to: sender, kind: "keyring")
        case .reply(let error, let keys):
            guard let r = rollouts[m.id], r.pending.removeValue(forKey: m.from) != nil else { return }
            r.answers[m.from] = (error, keys)
            if r.pending.isEmpty { finish(r) }
        }
    }
}
