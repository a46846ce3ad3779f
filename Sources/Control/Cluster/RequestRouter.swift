import Determinism
import Raft

/// Request routing as a pure core: changes and linearizable reads waiting on this node, each
/// sent to the leader (or proposed here when this node leads), sent again when the leader
/// changes or after `resendAfter` without an answer, and failed at its deadline. The shell keeps
/// the promises, turns the commands into proposals and frames, and tells the router what it
/// applied. A change carries a random id and the state machine applies an id once, so a resend
/// that reaches a leader which already has it costs nothing.
public struct RequestRouter: Sendable {
    public struct Settings: Sendable {
        /// Changes and reads waiting at once; past it a new one is refused (busy).
        public var maxWaiting = 10_000
        /// A request unanswered this long is failed.
        public var timeout = Span.seconds(10)
        /// Sent again to the same leader after this long without an answer (the frame or the
        /// leader's queue may have dropped it).
        public var resendAfter = Span.seconds(2)
        public init() {}
    }

    /// Who leads, as this node's Raft core sees it.
    public struct View: Sendable, Equatable {
        public var me: String
        public var leader: String?
        public init(me: String, leader: String?) { self.me = me; self.leader = leader }
        var leading: Bool { leader == me }
    }

    public enum Command: Sendable, Equatable {
        /// This node leads: propose the request in the next batch.
        case propose([UInt8])
        case forward([UInt8], to: String)
        /// This node leads: ask the core for a read index for read `id`, then `readIndex(id:_)`.
        case readIndexHere(id: UInt64)
        case askReadIndex(id: UInt64, to: String)
        case failed(RequestID, reason: String)
        case readFailed(id: UInt64, reason: String)
        /// Read `id` may now be served from this node's state.
        case readReady(id: UInt64)
    }

    struct Change {
        var bytes: [UInt8]
        var deadline: Instant
        var sentTo: String?
        var sentAt: Instant
    }
    struct Read {
        var index: LogIndex?
        var deadline: Instant
        var sentTo: String?
        var sentAt: Instant
    }

    public let settings: Settings
    private(set) var changes: [RequestID: Change] = [:]
    private(set) var reads: [UInt64: Read] = [:]
    private var nextReadID: UInt64 = 1

    public init(settings: Settings = Settings()) { self.settings = settings }

    public var waiting: Int { changes.count + reads.count }

    /// A change to route. nil: refused, `maxWaiting` are waiting (the caller says busy).
    public mutating func submit(_ id: RequestID, bytes: [UInt8], now: Instant, view: View) -> [Command]? {
        guard changes[id] == nil else { return [] }  // the same request again: it is on its way
        guard changes.count < settings.maxWaiting else { return nil }
        changes[id] = Change(bytes: bytes, deadline: now + settings.timeout, sentTo: nil, sentAt: now)
        return route(id, now: now, view: view)
    }

    /// A linearizable read to route; its id, or nil when `maxWaiting` are waiting.
    public mutating func read(now: Instant, view: View) -> (id: UInt64, commands: [Command])? {
        guard reads.count < settings.maxWaiting else { return nil }
        let id = nextReadID
        nextReadID += 1
        reads[id] = Read(index: nil, deadline: now + settings.timeout, sentTo: nil, sentAt: now)
        return (id, routeRead(id, now: now, view: view))
    }

    /// This node applied request `id`: true when a caller here was waiting for it.
    public mutating func applied(_ id: RequestID) -> Bool { changes.removeValue(forKey: id) != nil }

    /// The leader's answer to a read index request (nil: it could not give one yet; asked again
    /// on the next tick). `applied` is this node's applied index.
    public mutating func readIndex(id: UInt64, _ index: LogIndex?, applied: LogIndex) -> [Command] {
        guard reads[id] != nil, reads[id]!.index == nil else { return [] }
        if let index { reads[id]!.index = index } else { reads[id]!.sentTo = nil }
        return served(applied: applied)
    }

    /// Reads whose index this node has now applied.
    public mutating func served(applied: LogIndex) -> [Command] {
        let ready = reads.filter { $0.value.index.map { $0 <= applied } ?? false }.keys.sorted()
        for id in ready { reads[id] = nil }
        return ready.map { .readReady(id: $0) }
    }

    /// Every tick: fail what is past its deadline, send again what went to a leader that is no
    /// longer the leader, to no leader, or too long ago.
    public mutating func tick(now: Instant, view: View) -> [Command] {
        var out: [Command] = []
        let reason = view.leader.map { "no answer from leader \($0)" } ?? "no leader elected"
        for id in changes.keys.sorted(by: Self.order) {
            let c = changes[id]!
            if now > c.deadline {
                changes[id] = nil
                out.append(.failed(id, reason: reason))
            } else if stale(c.sentTo, c.sentAt, now: now, view: view) {
                out += route(id, now: now, view: view)
            }
        }
        for id in reads.keys.sorted() {
            let r = reads[id]!
            if now > r.deadline {
                reads[id] = nil
                out.append(.readFailed(id: id, reason: reason))
            } else if r.index == nil, stale(r.sentTo, r.sentAt, now: now, view: view) {
                out += routeRead(id, now: now, view: view)
            }
        }
        return out
    }

    /// Everything waiting fails (the node is stopping).
    public mutating func failAll(reason: String) -> [Command] {
        let out =
            changes.keys.sorted(by: Self.order).map { Command.failed($0, reason: reason) }
            + reads.keys.sorted().map { Command.readFailed(id: $0, reason: reason) }
        changes = [:]; reads = [:]
        return out
    }

    /// Requests in a fixed order, so the same inputs give the same commands (a simulation replays).
    static func order(_ a: RequestID, _ b: RequestID) -> Bool { (a.hi, a.lo) < (b.hi, b.lo) }

    private func stale(_ sentTo: String?, _ sentAt: Instant, now: Instant, view: View) -> Bool {
        sentTo == nil || sentTo != view.leader || now - sentAt > settings.resendAfter
    }

    private mutating func route(_ id: RequestID, now: Instant, view: View) -> [Command] {
        changes[id]!.sentAt = now
        changes[id]!.sentTo = view.leader
        guard let l = view.leader else { return [] }
        return [view.leading ? .propose(changes[id]!.bytes) : .forward(changes[id]!.bytes, to: l)]
    }

    private mutating func routeRead(_ id: UInt64, now: Instant, view: View) -> [Command] {
        reads[id]!.sentAt = now
        reads[id]!.sentTo = view.leader
        guard let l = view.leader else { return [] }
        return [view.leading ? .readIndexHere(id: id) : .askReadIndex(id: id, to: l)]
    }
}
