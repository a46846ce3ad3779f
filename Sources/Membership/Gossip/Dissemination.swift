#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rumor handling (SWIM §4.2 with incarnations) and infection-style dissemination (§4.1).
extension SWIM {
    /// Queues a rumor; a newer rumor about the same member replaces the older one.
    /// News about this node itself (refutations, tag changes) is sent twice as often: a member
    /// that misses a refutation will otherwise declare a healthy node dead.
    mutating func enqueue(_ r: Rumor) {
        if rumors[r.subject] == nil { rumorOrder.append(r.subject) }
        rumors[r.subject] = QueuedRumor(rumor: r, transmits: r.subject == name ? -retransmitLimit : 0, bytes: Self.estimatedBytes(r))
    }

    var retransmitLimit: Int {
        var digits = 0, n = liveCount + 1
        var p = 1
        while p < n { p *= 10; digits += 1 }  // ⌈log10(N+1)⌉
        return settings.retransmitMultiplier * max(1, digits)
    }

    /// Takes the least-sent rumors that fit in `budget` bytes for one packet and counts the
    /// transmission (a rumor that does not fit waits for a packet with room).
    mutating func piggyback(budget: Int) -> [Rumor] {
        guard !rumorOrder.isEmpty else { return [] }
        let limit = retransmitLimit
        let ranked = rumorOrder.enumerated().sorted { (rumors[$0.element]!.transmits, $0.offset) < (rumors[$1.element]!.transmits, $1.offset) }
        let most = settings.maxRumorsPerPacket
        var out: [Rumor] = []
        var left = budget
        for (_, subject) in ranked {
            if out.count == most || left <= 0 { break }
            let q = rumors[subject]!
            guard q.bytes <= left else { continue }
            left -= q.bytes
            out.append(q.rumor)
            rumors[subject]!.transmits += 1
            if rumors[subject]!.transmits >= limit { rumors[subject] = nil }
        }
        rumorOrder.removeAll { rumors[$0] == nil }
        return out
    }

    /// Only messages that get an answer carry the sender's address (saves ~16 bytes on most packets).
    mutating func packet(_ m: Message) -> Packet {
        let answered: Bool
        switch m {
        case .ping, .pingRequest, .pushPull(_, false, _, false): answered = true
        case .ack, .nack, .pushPull, .gossip: answered = false
        }
        let base = name.utf8.count + address.utf8.count + Self.estimatedBytes(m)
        return Packet(from: name, fromAddress: answered ? address : "", message: m, rumors: piggyback(budget: settings.maxPacketBytes - base))
    }

    /// An upper bound on a state's encoded size (each string has a one-byte length, each
    /// varint at most ten bytes).
    static func estimatedBytes(name: String, address: String, tags: [String: String]) -> Int {
        24 + name.utf8.count + address.utf8.count + tags.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 }
    }

    static func estimatedBytes(_ r: Rumor) -> Int {
        switch r {
        case .alive(let n, let a, _, let t): estimatedBytes(name: n, address: a, tags: t)
        case .suspect(let n, _, let f), .dead(let n, _, let f): estimatedBytes(name: n, address: f, tags: [:])
        case .left(let n, _): estimatedBytes(name: n, address: "", tags: [:])
        }
    }

    static func estimatedBytes(_ m: Message) -> Int {
        switch m {
        case .ping(_, let t): 24 + t.utf8.count
        case .pingRequest(_, let t, let a): 24 + t.utf8.count + a.utf8.count
        case .ack, .nack, .gossip: 24
        case .pushPull(let states, _, _, _): states.reduce(24) { $0 + estimatedBytes(name: $1.name, address: $1.address, tags: $1.tags) }
        }
    }

    mutating func gossip(_ out: inout [Effect]) {
        guard !rumorOrder.isEmpty else { return }
        for n in pick(settings.gossipFanout, from: liveNames()) {
            let p = packet(.gossip)
            guard !p.rumors.isEmpty else { break }
            out.append(.send(p, to: entries[n]!.member.address))
        }
    }

    mutating func pushPull(now: Instant, _ out: inout [Effect]) {
        if joinSyncStep < settings.joinSyncSchedule.count - 1 {
            joinSyncStep += 1
            nextPushPullAt = now + settings.joinSyncSchedule[joinSyncStep]
        } else {
            // memberlist scales the interval with cluster size so total sync traffic stays flat.
            let n = liveCount
            let scale = n <= 32 ? 1.0 : 1.0 + (log(Double(n)) - log(32)) / log(2)
            nextPushPullAt = now + settings.pushPullInterval * scale
        }
        var targets: [String]
        if !joined {
            targets = seeds
        } else {
            targets = pick(1, from: liveNames()).map { entries[$0]!.member.address }
            // Also one member we think dead: after a partition, this is how the halves find each
            // other again (Serf's reconnect does the same job outside memberlist).
            let dead = order.filter { entries[$0]!.member.status == .dead }
            targets += pick(1, from: dead).map { entries[$0]!.member.address }
            if targets.isEmpty { targets = seeds }
        }
        for t in targets { sendPushPull(to: t, isReply: false, isJoin: !joined, &out) }
    }

    /// The full state, in datagrams of at most about `pushPullBytes` of member state each (so a
    /// cluster of thousands stays within UDP's limit and one lost part costs only that part).
    mutating func sendPushPull(to address: String, isReply: Bool, isJoin: Bool, _ out: inout [Effect]) {
        var parts: [[MemberState]] = [[]]
        var size = 0
        for s in states() {
            let n = Self.estimatedBytes(name: s.name, address: s.address, tags: s.tags)
            if size + n > settings.pushPullBytes && !parts[parts.count - 1].isEmpty {
                parts.append([])
                size = 0
            }
            parts[parts.count - 1].append(s)
            size += n
        }
        for (i, part) in parts.enumerated() {
            let m: Message =
                i == 0
                ? .pushPull(states: part, isReply: isReply, isJoin: isJoin)
                : .pushPull(states: part, isReply: true, isJoin: false, isPart: true)
            out.append(.send(packet(m), to: address))
        }
    }

    /// Push-pull state becomes rumors; a remote "dead" only raises suspicion here, as in
    /// memberlist, so one node's stale view cannot kill a healthy member.
    mutating func merge(_ s: MemberState, from: String, now: Instant, _ out: inout [Effect]) {
        switch s.status {
        case .alive: apply(.alive(name: s.name, address: s.address, incarnation: s.incarnation, tags: s.tags), now: now, &out)
        case .suspect, .dead:
            if s.name != name && entries[s.name] == nil {
                // Learn the member first, so the suspicion has something to attach to.
                apply(.alive(name: s.name, address: s.address, incarnation: s.incarnation, tags: s.tags), now: now, &out)
            }
            apply(.suspect(name: s.name, incarnation: s.incarnation, from: from), now: now, &out)
        case .left:
            if s.name != name && entries[s.name] == nil { return }
            apply(.left(name: s.name, incarnation: s.incarnation), now: now, &out)
        }
    }

    mutating func refute(_ heard: Incarnation, _ out: inout [Effect]) {
        incarnation = max(heard, incarnation).next
        refutations += 1
        if settings.lifeguard { awareness = min(settings.awarenessMax, awareness + 1) }
        enqueue(.alive(name: name, address: address, incarnation: incarnation, tags: tags))
    }

    /// Someone still believes this node suspect or dead. A current accusation is refuted with a
    /// higher incarnation; a stale one (our refutation has not reached them) re-queues our current
    /// alive rumor. Either way the accuser also hears it directly: its suspicion timer is the one
    /// running, and epidemic spread alone can miss a single member.
    mutating func answerAccusation(_ heard: Incarnation, accuser: String, _ out: inout [Effect]) {
        if heard >= incarnation {
            refute(heard, &out)
        } else if rumors[name] == nil {
            enqueue(.alive(name: name, address: address, incarnation: incarnation, tags: tags))
        }
        if let a = entries[accuser]?.member, a.status == .alive || a.status == .suspect {
            let alive = Rumor.alive(name: name, address: address, incarnation: incarnation, tags: tags)
            out.append(.send(Packet(from: name, fromAddress: "", message: .gossip, rumors: [alive]), to: a.address))
        }
    }

    mutating func apply(_ r: Rumor, now: Instant, _ out: inout [Effect]) {
        switch r {
        case .alive(let n, let addr, let inc, let t):
            if n == name {
                // A memory of an earlier life of this node: outbid it.
                if inc > incarnation && !isLeaving { refute(inc, &out) }
                return
            }
            guard var e = entries[n] else {
                guard entries.count < settings.maxMembers else {
                    refusedAtBounds += 1
                    return
                }
                let m = Member(name: n, address: addr, status: .alive, incarnation: inc, tags: t, since: now)
                entries[n] = Entry(member: m, suspicion: nil)
                order.append(n)
                addLive(n)
                enqueue(r)
                out.append(.event(.joined(m)))
                return
            }
            guard inc > e.member.incarnation else { return }
            let was = e.member.status
            setStatus(&e, .alive, now: now)
            e.member.incarnation = inc; e.member.address = addr; e.member.tags = t
            e.suspicion = nil
            entries[n] = e
            enqueue(r)
            out.append(.event(was == .dead || was == .left ? .joined(e.member) : .updated(e.member)))
        case .suspect(let n, let inc, let from):
            if n == name {
                if !isLeaving { answerAccusation(inc, accuser: from, &out) }
                return
            }
            guard var e = entries[n], inc >= e.member.incarnation else { return }
            switch e.member.status {
            case .dead, .left:
                return
            case .suspect where inc == e.member.incarnation:
                // Only listed members (and this node) confirm, so the set stays within `maxMembers` whatever
                // names a key holder invents.
                guard from != e.suspicion?.accuser, from == name || entries[from] != nil,
                    e.suspicion?.confirmations.insert(from).inserted == true
                else { return }
                entries[n] = e
                enqueue(r)  // confirmations travel too: others' timers shrink with them
            case .alive, .suspect:
                setStatus(&e, .suspect, now: now)
                e.member.incarnation = inc
                e.suspicion = Suspicion(start: now, accuser: from, confirmations: [])
                entries[n] = e
                enqueue(r)
                out.append(.event(.suspected(e.member)))
            }
        case .dead(let n, let inc, let from):
            if n == name {
                if !isLeaving { answerAccusation(inc, accuser: from, &out) }
                return
            }
            guard var e = entries[n], inc >= e.member.incarnation, e.member.status != .dead, e.member.status != .left else { return }
            setStatus(&e, .dead, now: now)
            e.member.incarnation = inc; e.suspicion = nil
            entries[n] = e
            enqueue(r)
            out.append(.event(.failed(e.member)))
        case .left(let n, let inc):
            if n == name {
                // An earlier life of this node left gracefully and this one is back: refute, or
                // peers keep it "left" (its fresh alive rumor has no higher incarnation). memberlist
                // does the same.
                if !isLeaving { answerAccusation(inc, accuser: "", &out) }
                return
            }
            guard var e = entries[n], inc >= e.member.incarnation, e.member.status != .left else { return }
            setStatus(&e, .left, now: now)
            e.member.incarnation = inc; e.suspicion = nil
            entries[n] = e
            enqueue(r)
            out.append(.event(.left(e.member)))
        }
    }
}
