import Files
import Gossip
import NIOCore
import Security
import Support

/// What every live member answered to one keyring operation.
public struct KeyringRollout: Codable, Sendable, Equatable {
    /// One key and how many answering members hold it and seal with it.
    public struct KeyCount: Codable, Sendable, Equatable {
        public var key: String
        public var nodes: Int
        public var primary: Int
        public init(key: String, nodes: Int, primary: Int) { self.key = key; self.nodes = nodes; self.primary = primary }
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

    public init(op: String, nodes: Int, ok: [String], failed: [String: String] = [:], noReply: [String], keys: [KeyCount]) {
        self.op = op; self.nodes = nodes; self.ok = ok; self.failed = failed; self.noReply = noReply; self.keys = keys
    }
}

/// Why a cluster-wide change was not started (nothing changed anywhere).
public struct KeyringRefusal: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
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
    /// A cluster-wide operation in flight (on the loop): the core, the caller's promise and the
    /// one timer that wakes the core next.
    final class Rollout: @unchecked Sendable {  // touched only on the loop
        var ask: KeyringAsk
        let promise: EventLoopPromise<KeyringRollout>
        var wake: Scheduled<Void>?
        init(_ ask: KeyringAsk, promise: EventLoopPromise<KeyringRollout>) { self.ask = ask; self.promise = promise }
    }

    /// Runs `op` on this node and every live member. `use` first checks that every live member
    /// holds the key and `remove` that none seals with it; either refuses, changing nothing,
    /// when one does not or does not answer, because a member that cannot open its peers'
    /// packets, or whose packets no peer can open, soon looks dead to the rest.
    public func keyringEverywhere(_ op: KeyringOp, key: [UInt8], timeout: TimeAmount = .seconds(2)) async throws -> KeyringRollout {
        if op == .use || op == .remove {
            let listing = try await rollout(.list, key: [], timeout: timeout)
            if !listing.noReply.isEmpty {
                throw KeyringRefusal(
                    description: "no answer from \(listing.noReply.sorted().joined(separator: ", ")); nothing changed (retry, or use --local on each node)")
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
            let targets = Dictionary(
                self.core.members.filter { $0.name != self.core.name && ($0.status == .alive || $0.status == .suspect) }
                    .map { ($0.name, $0.address) }, uniquingKeysWith: { a, _ in a })
            let ask = KeyringAsk(
                op: op, key: key, id: UInt64.random(in: 1...UInt64.max), me: self.core.name,
                mine: .init(error: nil, keys: self.keyring.keys), targets: targets,
                now: Self.now(), timeout: Span(nanoseconds: timeout.nanoseconds))
            let r = Rollout(ask, promise: self.loop.makePromise())
            self.rollouts[ask.id] = r
            self.run(r, r.ask.start(wallClock: Self.wallClock()))
            return r.promise.futureResult
        }.get()
    }

    /// Carries out the core's commands and sets the timer for its next wake-up.
    func run(_ r: Rollout, _ commands: [KeyringAsk.Command]) {
        for c in commands {
            switch c {
            case .send(let bytes, let address): send(bytes, to: address, kind: "keyring")
            case .finished: finish(r)
            }
        }
        r.wake?.cancel()
        guard let at = r.ask.wakeAt else { return }
        r.wake = loop.scheduleTask(in: .nanoseconds(max(0, (at - Self.now()).nanoseconds))) {
            self.run(r, r.ask.tick(now: Self.now(), wallClock: Self.wallClock()))
        }
    }

    func finish(_ r: Rollout) {
        guard rollouts.removeValue(forKey: r.ask.id) != nil else { return }
        var counts: [[UInt8]: (nodes: Int, primary: Int)] = [:]
        var order: [[UInt8]] = []
        for (_, a) in r.ask.answers.sorted(by: { $0.key < $1.key }) where a.error == nil {
            for (i, k) in a.keys.enumerated() {
                if counts[k] == nil { order.append(k) }
                counts[k, default: (0, 0)].nodes += 1
                if i == 0 { counts[k, default: (0, 0)].primary += 1 }
            }
        }
        r.promise.succeed(
            KeyringRollout(
                op: r.ask.op.name, nodes: r.ask.nodes,
                ok: r.ask.answers.filter { $0.value.error == nil }.map(\.key).sorted(),
                failed: r.ask.answers.compactMapValues(\.error),
                noReply: r.ask.pending.keys.sorted(),
                keys: order.map { KeyringRollout.KeyCount(key: Base64.encode($0), nodes: counts[$0]!.nodes, primary: counts[$0]!.primary) }))
    }

    /// A keyring message arrived (already opened by the keyring, so from a key holder).
    func receiveKeyring(_ m: KeyringMessage, from sender: SocketAddress) {
        if case .reply = m.body {
            if let r = rollouts[m.id] { run(r, r.ask.receive(m)) }
            return
        }
        switch responder.receive(m, now: Self.now(), wallClock: Self.wallClock()) {
        case .again(let reply):
            send(reply, to: sender, kind: "keyring")
        case .refuse(let reason):
            metrics.drop(reason)
            if reason == "keyring_clock_skew" {
                logger.warning("keyring request from \(m.from) dropped: its clock is over a minute from ours (or it is a replay)")
            }
        case .apply(let op, let key):
            var failure: String?
            do {
                let before = keyring
                if try applyKeyring({ try $0.apply(op, key) }) != before { logger.notice("keyring \(op.name) from \(m.from)") }
            } catch {
                failure = "\(error)"
            }
            // Sealed with the keyring as it is now: after `use`, with the new primary, which the
            // asking node holds (it checked that everyone does, itself included).
            let reply = responder.answer(m, me: core.name, error: failure, keys: keyring.keys, now: Self.now(), wallClock: Self.wallClock())
            send(reply, to: sender, kind: "keyring")
        }
    }
}
