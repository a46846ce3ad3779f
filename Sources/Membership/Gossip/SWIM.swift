#if canImport(Glibc)
import Glibc  // log and log10 only: the core reads no clock and draws no randomness of its own
#elseif canImport(Darwin)
import Darwin
#endif

/// What the shell must do after feeding the core an event.
public enum Effect: Equatable, Sendable {
    case send(Packet, to: String)
    case event(MembershipEvent)
}

/// SWIM membership (Das, Gupta, Motivala 2002) with Lifeguard (Dadgar et al. 2018), as a sans-IO
/// state machine: `tick`, `receive`, `join`, `leave` and `updateTags` take the time and return
/// effects; randomness comes from the seeded generator given at start. Deviations from the papers,
/// shared with memberlist: rumors also travel in dedicated gossip packets, and periodic push-pull
/// of full state heals partitions. A joining node additionally exchanges state on
/// `joinSyncSchedule`, so bursts of joins converge even when rumors overflow packets.
public struct SWIM: Sendable {
    public let settings: SWIMSettings
    public let name: String
    public let address: String
    public internal(set) var incarnation = Incarnation(0)
    public private(set) var tags: [String: String]
    /// Lifeguard local health: 0 is healthy; probes stretch by (awareness + 1).
    public internal(set) var awareness = 0
    public private(set) var isLeaving = false
    /// Rumors about new members and ping requests refused at `maxMembers` and `maxRelays`.
    public internal(set) var refusedAtBounds = 0
    /// Accusations of this node refuted with a higher incarnation.
    public internal(set) var refutations = 0

    var rng: SeededRandom
    var entries: [String: Entry] = [:]
    /// Member names in a fixed order: iteration over a Dictionary would not replay from a seed.
    var order: [String] = []
    /// Alive and suspect members, kept in step with every status change (hot: probes, gossip).
    var live: [String] = []
    /// Suspect members, for the suspicion timers.
    var suspects: [String] = []
    /// Suspects this node has probed since their suspicion began.
    var probedSuspects: Set<String> = []
    /// Live members and this node, sorted by name: the shared probe ring (see `nextProbeTarget`).
    var ring: [String] = []
    /// Added to `now` to number protocol periods on a clock shared between nodes (the shell sets
    /// wall clock minus its monotonic clock; the simulator's clock is shared already).
    public var periodClockOffset: Int64 = 0
    var probe: Probe?
    var nextProbeAt: Instant
    var relays: [UInt32: Relay] = [:]
    var rumors: [String: QueuedRumor] = [:]
    var rumorOrder: [String] = []
    var nextGossipAt: Instant
    var nextPushPullAt: Instant
    var joinSyncStep = 0
    var seeds: [String] = []
    var joined = false
    var seq: UInt32 = 0

    struct Entry: Sendable {
        var member: Member
        var suspicion: Suspicion?
    }

    struct Suspicion: Sendable {
        var start: Instant
        /// Who first accused; independent confirmations are everyone else who did too.
        var accuser: String
        var confirmations: Set<String>
    }

    struct Probe: Sendable {
        var seq: UInt32
        var target: String
        var timeoutAt: Instant
        var endAt: Instant
        var indirectSent = false
        var nacksExpected = 0
        var nacks = 0
    }

    struct Relay: Sendable {
        var origin: String
        var originSeq: UInt32
        var deadline: Instant
    }

    struct QueuedRumor: Sendable {
        var rumor: Rumor
        var transmits: Int
        /// `estimatedBytes(rumor)`, computed once at enqueue rather than for every packet.
        var bytes: Int
    }

    public init(
        name: String, address: String, tags: [String: String] = [:], settings: SWIMSettings = SWIMSettings(),
        seed: UInt64, now: Instant
    ) {
        self.name = name
        self.address = address
        self.tags = tags
        self.settings = settings
        rng = SeededRandom(seed: seed)
        ring = [name]
        nextProbeAt = now + settings.probeInterval
        nextGossipAt = now + settings.gossipInterval
        nextPushPullAt = now + settings.pushPullInterval
    }

    // MARK: Queries

    /// Every member including this node, in a stable order.
    public var members: [Member] {
        [selfMember] + order.compactMap { entries[$0]?.member }
    }

    public var selfMember: Member {
        Member(
            name: name, address: address, status: isLeaving ? .left : .alive, incarnation: incarnation, tags: tags,
            since: Instant(nanoseconds: 0))
    }

    public func member(_ name: String) -> Member? { entries[name]?.member }

    /// Members counted for timeouts and retransmit limits: alive or suspect, plus this node.
    var liveCount: Int { live.count + 1 }

    var probeScale: Int { settings.lifeguard ? awareness + 1 : 1 }

    // MARK: Inputs

    /// Contacts seeds (gossip addresses) with a full-state exchange, retried on the join schedule
    /// until one answers.
    public mutating func join(seeds: [String], now: Instant) -> [Effect] {
        self.seeds = seeds.filter { $0 != address }
        joined = self.seeds.isEmpty
        joinSyncStep = 0
        nextPushPullAt = now + (settings.joinSyncSchedule.first ?? settings.pushPullInterval)
        var out: [Effect] = []
        for s in self.seeds { sendPushPull(to: s, isReply: false, isJoin: true, &out) }
        return out
    }

    /// Graceful leave: tells every live member directly, then keeps gossiping until the shell stops.
    public mutating func leave(now: Instant) -> [Effect] {
        isLeaving = true
        let rumor = Rumor.left(name: name, incarnation: incarnation)
        enqueue(rumor)
        return liveNames().map { .send(Packet(from: name, fromAddress: "", message: .gossip, rumors: [rumor]), to: entries[$0]!.member.address) }
    }

    /// Changes this node's tags; others learn them through a fresh alive rumor.
    public mutating func updateTags(_ newTags: [String: String], now: Instant) -> [Effect] {
        tags = newTags
        incarnation = incarnation.next
        enqueue(.alive(name: name, address: address, incarnation: incarnation, tags: tags))
        return []
    }

    /// Drives every timer: probes, indirect probes, suspicion expiry, gossip and push-pull.
    public mutating func tick(now: Instant) -> [Effect] {
        var out: [Effect] = []
        probeTimers(now: now, &out)
        expireSuspicions(now: now, &out)
        expireRelays(now: now, &out)
        if now >= nextGossipAt {
            nextGossipAt = now + settings.gossipInterval
            gossip(&out)
        }
        if now >= nextPushPullAt { pushPull(now: now, &out) }
        reclaim(now: now)
        return out
    }

    /// Handles one packet from the network.
    public mutating func receive(_ p: Packet, now: Instant) -> [Effect] {
        guard p.from != name else { return [] }
        var out: [Effect] = []
        for r in p.rumors { apply(r, now: now, &out) }
        switch p.message {
        case .ping(let s, let target):
            if target == name { out.append(.send(packet(.ack(seq: s)), to: p.fromAddress)) }
        case .pingRequest(let s, let target, let targetAddress):
            guard relays.count < settings.maxRelays else {
                refusedAtBounds += 1
                break
            }
            let mine = nextSeq()
            // The nack must reach the prober before its probe period ends (it asked us probeTimeout
            // into a period of probeInterval), or the prober counts it missing and blames itself.
            relays[mine] = Relay(origin: p.fromAddress, originSeq: s, deadline: now + settings.probeTimeout * 0.8)
            out.append(.send(packet(.ping(seq: mine, target: target)), to: targetAddress))
        case .ack(let s):
            if let relay = relays.removeValue(forKey: s) {
                out.append(.send(packet(.ack(seq: relay.originSeq)), to: relay.origin))
            } else if probe?.seq == s {
                probe = nil
                if settings.lifeguard { awareness = max(0, awareness - 1) }
            }
        case .nack(let s):
            if probe?.seq == s { probe!.nacks += 1 }
        case .pushPull(let states, let isReply, _, let isPart):
            for s in states { merge(s, from: p.from, now: now, &out) }
            if isPart {
                break
            } else if isReply {
                joined = true
            } else {
                sendPushPull(to: p.fromAddress, isReply: true, isJoin: false, &out)
            }
        case .gossip:
            break
        }
        return out
    }

    // MARK: Probing (SWIM §3, Lifeguard §4.1)

    mutating func probeTimers(now: Instant, _ out: inout [Effect]) {
        if var p = probe {
            if !p.indirectSent && now >= p.timeoutAt {
                p.indirectSent = true
                let helpers = pick(settings.indirectChecks, from: liveNames().filter { $0 != p.target && entries[$0]!.member.status == .alive })
                if let target = entries[p.target]?.member {
                    for h in helpers {
                        out.append(
                            .send(
                                packet(.pingRequest(seq: p.seq, target: target.name, targetAddress: target.address)),
                                to: entries[h]!.member.address))
                    }
                }
                p.nacksExpected = settings.lifeguard ? helpers.count : 0
                probe = p
            }
            if now >= p.endAt {
                probe = nil
                if settings.lifeguard && p.nacksExpected > p.nacks {
                    // Missing nacks mean our own messages are not getting through: we may be the slow one.
                    awareness = min(settings.awarenessMax, awareness + (p.nacksExpected - p.nacks))
                }
                // Also when someone else already suspects it: our failed probe is an independent confirmation.
                if let e = entries[p.target], e.member.status == .alive || e.member.status == .suspect {
                    apply(.suspect(name: e.member.name, incarnation: e.member.incarnation, from: name), now: now, &out)
                }
            }
        }
        guard probe == nil, now >= nextProbeAt else { return }
        // Probes keep their own schedule, not the 50 ms tick's: each one is due one interval after
        // the last was due, so the period numbers a node probes at stay consecutive.
        let due = now - nextProbeAt < settings.probeInterval ? nextProbeAt : now
        let scale = probeScale
        nextProbeAt = due + settings.probeInterval * scale
        guard let target = nextProbeTarget(due: due) else { return }
        let s = nextSeq()
        probe = Probe(seq: s, target: target.name, timeoutAt: now + settings.probeTimeout * scale, endAt: nextProbeAt)
        var pkt = packet(.ping(seq: s, target: target.name))
        if settings.lifeguard && target.status == .suspect {
            // Buddy system (Lifeguard §4.3): tell a suspect it is suspected, so it can refute at once.
            pkt.rumors.insert(.suspect(name: target.name, incarnation: target.incarnation, from: name), at: 0)
        }
        out.append(.send(pkt, to: target.address))
    }

    /// A suspect this node has not probed yet comes first: a dead member gets its independent
    /// confirmations sooner, and a live one hears (buddy system) that it must refute, straight
    /// from a member whose suspicion timer is running.
    ///
    /// Otherwise the target comes from one ring shared by all (the live members and this node,
    /// sorted by name): in protocol period k (numbered on a clock the nodes share) a node probes
    /// the member 1 + k mod (N-1) places after itself. With views and clocks in step every member
    /// is probed by exactly one member per period, so a crash is noticed about one period after it
    /// happens; SWIM's per-node shuffle leaves a member unprobed for a whole period with
    /// probability ≈ 1/e, which is what makes its detection times spread. Each node still probes
    /// every other once per N-1 periods; skewed clocks only make the schedule look random again.
    mutating func nextProbeTarget(due: Instant) -> Member? {
        if let s = suspects.first(where: { !probedSuspects.contains($0) }), let m = entries[s]?.member {
            probedSuspects.insert(s)
            return m
        }
        guard ring.count > 1, let me = ringIndex(of: name) else { return nil }
        let period = (due.nanoseconds &+ periodClockOffset) / settings.probeInterval.nanoseconds
        let step = 1 + Int(period.magnitude % UInt64(ring.count - 1))
        return entries[ring[(me + step) % ring.count]]?.member
    }

    /// Where `n` is or would go in `ring` (binary search).
    func ringSlot(_ n: String) -> Int {
        var lo = 0, hi = ring.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ring[mid] < n { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func ringIndex(of n: String) -> Int? {
        let i = ringSlot(n)
        return i < ring.count && ring[i] == n ? i : nil
    }

    mutating func addLive(_ n: String) {
        live.append(n)
        if ringIndex(of: n) == nil { ring.insert(n, at: ringSlot(n)) }
    }

    mutating func removeLive(_ n: String) {
        live.removeAll { $0 == n }
        if let i = ringIndex(of: n) { ring.remove(at: i) }
    }

    mutating func expireRelays(now: Instant, _ out: inout [Effect]) {
        for s in relays.keys.sorted() where relays[s]!.deadline <= now {
            let r = relays.removeValue(forKey: s)!
            if settings.lifeguard { out.append(.send(packet(.nack(seq: r.originSeq)), to: r.origin)) }
        }
    }

    // MARK: Suspicion (Lifeguard §4.2)

    func suspicionTimeout(confirmations c: Int) -> Span {
        let n = Double(liveCount)
        let minimum = settings.probeInterval * (Double(settings.suspicionMultiplier) * max(1, log10(n)))
        guard settings.lifeguard else { return minimum }
        let maximum = minimum * Double(settings.suspicionMaxMultiplier)
        let k = max(0, min(settings.suspicionMultiplier - 2, liveCount - 2))
        guard k > 0 else { return minimum }
        let fraction = log(Double(c) + 1) / log(Double(k) + 1)
        let t = Double(maximum.nanoseconds) - Double(maximum.nanoseconds - minimum.nanoseconds) * fraction
        return Span(nanoseconds: max(minimum.nanoseconds, Int64(t)))
    }

    mutating func expireSuspicions(now: Instant, _ out: inout [Effect]) {
        for n in suspects {
            guard let e = entries[n], e.member.status == .suspect, let s = e.suspicion,
                now >= s.start + suspicionTimeout(confirmations: s.confirmations.count)
            else { continue }
            apply(.dead(name: n, incarnation: e.member.incarnation, from: name), now: now, &out)
        }
    }

    mutating func reclaim(now: Instant) {
        let gone = order.filter { n in
            let m = entries[n]!.member
            return (m.status == .dead || m.status == .left) && now - m.since > settings.deadRetention
        }
        guard !gone.isEmpty else { return }
        for n in gone { entries[n] = nil }
        order.removeAll { entries[$0] == nil }
    }

    // MARK: Helpers

    mutating func nextSeq() -> UInt32 { seq &+= 1; return seq }

    func liveNames() -> [String] { live }

    /// Moves a member to `status`, keeping `live` and `suspects` in step.
    mutating func setStatus(_ e: inout Entry, _ status: MemberStatus, now: Instant) {
        let was = e.member.status
        guard was != status else { return }
        let n = e.member.name
        let wasLive = was == .alive || was == .suspect, isLive = status == .alive || status == .suspect
        if wasLive && !isLive { removeLive(n) }
        if !wasLive && isLive { addLive(n) }
        if was == .suspect { suspects.removeAll { $0 == n }; probedSuspects.remove(n) }
        if status == .suspect { suspects.append(n) }
        e.member.status = status
        e.member.since = now
    }

    mutating func pick(_ k: Int, from names: [String]) -> [String] {
        var pool = names
        var chosen: [String] = []
        while chosen.count < k && !pool.isEmpty {
            chosen.append(pool.remove(at: Int.random(in: 0..<pool.count, using: &rng)))
        }
        return chosen
    }

    func states() -> [MemberState] {
        members.map { MemberState(name: $0.name, address: $0.address, status: $0.status, incarnation: $0.incarnation, tags: $0.tags) }
    }
}
