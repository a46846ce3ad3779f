import Cluster
import Raft
import Simulation
import Testing

/// Request routing (`RequestRouter`) on every node of a simulated cluster whose leader changes
/// at random, whose nodes learn of it late, whose forwards and read-index frames are lost,
/// duplicated and delayed, whose deposed leaders lose what they had not committed, and whose
/// clocks drift. After every step: a change goes only to the leader the node believes in, never
/// over `maxWaiting` wait, each request is answered once (applied, or failed at its deadline and
/// not before), a read is served only once the node has applied the index the leader gave it,
/// and nothing waits past its deadline. After the cluster settles, every new request succeeds.
@Suite struct RequestRouterTests {
    static let tick = Span.milliseconds(100)

    enum Frame {
        case forward(RequestID, from: Int)
        case readIndex(UInt64, from: Int)
        case readIndexReply(UInt64, LogIndex?)
    }

    struct Node {
        var router: RequestRouter
        var clock: SimClock
        /// The leader this node believes in.
        var view: Int?
        var applied = 0
        /// Waiting changes: id → when submitted (local clock).
        var changes: [RequestID: Instant] = [:]
        var reads: [UInt64: Instant] = [:]
        /// The read index each read was given.
        var readIndex: [UInt64: LogIndex] = [:]
    }

    struct World {
        var rng: SeededRandom
        var t = Instant(nanoseconds: 0)
        var nodes: [Node] = []
        var net = SimNetwork<Frame>()
        var leader: Int?
        /// Committed entries, in order (a request id may appear twice: the state machine applies it once).
        var log: [RequestID] = []
        /// Proposed on the current leader, committed at the instant given unless it is deposed first.
        var proposed: [(id: RequestID, at: Instant)] = []
        var broken: [String] = []
        var succeeded = 0, failed = 0, busy = 0, readsServed = 0
        /// Requests submitted once the cluster had settled (they must all succeed).
        var mustSucceed: Set<RequestID> = []

        func name(_ i: Int) -> String { "n\(i)" }
        func view(_ i: Int) -> RequestRouter.View { .init(me: name(i), leader: nodes[i].view.map(name)) }
        func now(_ i: Int) -> Instant { nodes[i].clock.local(t) }

        static func id(_ bytes: [UInt8]) -> RequestID {
            RequestID(hi: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }, lo: bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) })
        }
        static func bytes(_ id: RequestID) -> [UInt8] {
            (0..<8).map { UInt8(truncatingIfNeeded: id.hi >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: id.lo >> (56 - 8 * $0)) }
        }

        mutating func propose(_ id: RequestID, on i: Int) {
            guard leader == i else { return }  // a deposed leader's core refuses the proposal
            proposed.append((id, t + rng.span(.milliseconds(1), .milliseconds(300))))
        }

        mutating func perform(_ i: Int, _ commands: [RequestRouter.Command]) {
            for c in commands {
                switch c {
                case .propose(let bytes):
                    if nodes[i].view != i { broken.append("n\(i) proposed while believing \(nodes[i].view.map(name) ?? "nobody") leads") }
                    propose(Self.id(bytes), on: i)
                case .forward(let bytes, let to):
                    if to != nodes[i].view.map(name) || to == name(i) {
                        broken.append("n\(i) forwarded to \(to), believing \(nodes[i].view.map(name) ?? "nobody") leads")
                    }
                    net.send(.forward(Self.id(bytes), from: i), from: i, to: Int(to.dropFirst())!, now: t, rng: &rng)
                case .readIndexHere(let id):
                    if nodes[i].view != i { broken.append("n\(i) read locally while not believing it leads") }
                    let index: LogIndex? = leader == i && rng.chance(0.9) ? LogIndex(UInt64(log.count)) : nil
                    if let index { nodes[i].readIndex[id] = index }
                    perform(i, nodes[i].router.readIndex(id: id, index, applied: LogIndex(UInt64(nodes[i].applied))))
                case .askReadIndex(let id, let to):
                    if to != nodes[i].view.map(name) {
                        broken.append("n\(i) asked \(to) for a read index, believing \(nodes[i].view.map(name) ?? "nobody") leads")
                    }
                    net.send(.readIndex(id, from: i), from: i, to: Int(to.dropFirst())!, now: t, rng: &rng)
                case .failed(let id, _):
                    guard let at = nodes[i].changes.removeValue(forKey: id) else { broken.append("n\(i) failed \(id), not waiting"); continue }
                    if now(i) - at <= nodes[i].router.settings.timeout { broken.append("n\(i) failed \(id) before its deadline") }
                    if mustSucceed.contains(id) { broken.append("n\(i) failed \(id) on a settled cluster") }
                    failed += 1
                case .readFailed(let id, _):
                    if nodes[i].reads.removeValue(forKey: id) == nil { broken.append("n\(i) failed read \(id), not waiting") }
                    failed += 1
                case .readReady(let id):
                    guard nodes[i].reads.removeValue(forKey: id) != nil else { broken.append("n\(i) served read \(id) twice or unasked"); continue }
                    guard let index = nodes[i].readIndex[id], index.value <= UInt64(nodes[i].applied) else {
                        broken.append(
                            "n\(i) served read \(id) at applied \(nodes[i].applied) before its read index \(nodes[i].readIndex[id]?.description ?? "none")")
                        continue
                    }
                    readsServed += 1
                }
            }
        }

        mutating func deliver(_ d: SimNetwork<Frame>.Delivery) {
            let i = d.to
            switch d.message {
            case .forward(let id, _):
                if !log.contains(id) { propose(id, on: i) }  // the leader skips what it has applied
            case .readIndex(let id, let from):
                guard leader == i else { return }  // not leading: the asker asks again later
                let index: LogIndex? = rng.chance(0.9) ? LogIndex(UInt64(log.count)) : nil
                net.send(.readIndexReply(id, index), from: i, to: from, now: t, rng: &rng)
            case .readIndexReply(let id, let index):
                if let index, nodes[i].reads[id] != nil, nodes[i].readIndex[id] == nil { nodes[i].readIndex[id] = index }
                perform(i, nodes[i].router.readIndex(id: id, index, applied: LogIndex(UInt64(nodes[i].applied))))
            }
        }

        /// Node `i` applies what is committed: each entry tells its router, which answers the waiter.
        mutating func apply(_ i: Int) {
            while nodes[i].applied < log.count {
                let id = log[nodes[i].applied]
                nodes[i].applied += 1
                let waiting = nodes[i].changes[id] != nil
                if nodes[i].router.applied(id) != waiting { broken.append("n\(i) router and caller disagree on whether \(id) waited") }
                if waiting { nodes[i].changes[id] = nil; succeeded += 1 }
            }
            perform(i, nodes[i].router.served(applied: LogIndex(UInt64(nodes[i].applied))))
        }

        mutating func check(_ i: Int) {
            let n = nodes[i], limit = n.router.settings.timeout + RequestRouterTests.tick
            if n.router.waiting != n.changes.count + n.reads.count {
                broken.append("n\(i) router holds \(n.router.waiting), callers \(n.changes.count + n.reads.count)")
            }
            if n.changes.count > n.router.settings.maxWaiting { broken.append("n\(i) holds \(n.changes.count) changes") }
            if let late = n.changes.first(where: { now(i) - $0.value > limit }) { broken.append("n\(i) still waits on \(late.key) past its deadline") }
            if n.reads.contains(where: { now(i) - $0.value > limit }) { broken.append("n\(i) still waits on a read past its deadline") }
        }
    }

    static func run(seed: UInt64) -> (problems: [String], world: World) {
        var w = World(rng: SeededRandom(seed: seed))
        let size = 1 + w.rng.below(5)
        var settings = RequestRouter.Settings()
        settings.maxWaiting = 4 + w.rng.below(40)
        settings.timeout = .seconds(Double(2 + w.rng.below(9)))
        for _ in 0..<size {
            w.nodes.append(Node(router: RequestRouter(settings: settings), clock: SimClock.random(maxOffset: .seconds(5), maxDriftPPM: 1_000, rng: &w.rng)))
        }
        w.leader = w.rng.below(size)
        w.net.lossRate = Double(w.rng.below(30)) / 100
        w.net.duplicateRate = Double(w.rng.below(20)) / 100
        w.net.delayMax = .milliseconds(1 + Int64(w.rng.below(500)))
        let churn = 600, quiet = 200, drain = 150  // ticks: 60 s of leader changes, 20 s settled, 15 s to drain
        var electionEnds: Instant?
        for step in 0..<(churn + quiet + drain) {
            w.t = w.t + tick
            let settled = step >= churn
            if settled && step == churn {
                w.net.lossRate = 0
                if w.leader == nil { w.leader = w.rng.below(size) }
                electionEnds = nil
                // What waits now with time for a resend left must get through: a frame lost
                // before the network healed is sent again after `resendAfter`.
                for i in 0..<size {
                    for (id, at) in w.nodes[i].changes where at + settings.timeout - w.now(i) > settings.resendAfter + .seconds(1) {
                        w.mustSucceed.insert(id)
                    }
                }
            }
            // Leadership: a crash or partition deposes the leader (its uncommitted proposals are
            // lost); a new one is elected a little later. Nodes learn of leaders late.
            if !settled, w.leader != nil, w.rng.chance(0.02) {
                w.leader = nil
                w.proposed = []
                electionEnds = w.t + w.rng.span(.milliseconds(200), .seconds(3))
            }
            if let e = electionEnds, w.t >= e { w.leader = w.rng.below(size); electionEnds = nil }
            for i in 0..<size where settled || w.rng.chance(0.3) { w.nodes[i].view = w.leader ?? (w.rng.chance(0.5) ? nil : w.nodes[i].view) }
            // Commit what is due on the leader.
            let due = w.proposed.filter { $0.at <= w.t }
            w.proposed.removeAll { $0.at <= w.t }
            w.log += due.map(\.id)
            while let d = w.net.next(dueBy: w.t) { w.deliver(d) }
            for i in 0..<size {
                if settled || w.rng.chance(0.7) { w.apply(i) }
                if step < churn + quiet {
                    if w.rng.chance(0.3) {
                        let id = RequestID(hi: w.rng.next(), lo: w.rng.next())
                        if let commands = w.nodes[i].router.submit(id, bytes: World.bytes(id), now: w.now(i), view: w.view(i)) {
                            w.nodes[i].changes[id] = w.now(i)
                            if settled && step >= churn + 10 { w.mustSucceed.insert(id) }
                            w.perform(i, commands)
                        } else {
                            w.busy += 1
                            if w.nodes[i].changes.count < settings.maxWaiting {
                                w.broken.append("n\(i) refused a change with \(w.nodes[i].changes.count) waiting")
                            }
                        }
                    }
                    if w.rng.chance(0.1), let (id, commands) = w.nodes[i].router.read(now: w.now(i), view: w.view(i)) {
                        w.nodes[i].reads[id] = w.now(i)
                        w.perform(i, commands)
                    }
                }
                w.perform(i, w.nodes[i].router.tick(now: w.now(i), view: w.view(i)))
                w.check(i)
            }
            if !w.broken.isEmpty { return (w.broken, w) }
        }
        for i in 0..<size where !w.nodes[i].changes.isEmpty || !w.nodes[i].reads.isEmpty {
            w.broken.append("n\(i) still waits on \(w.nodes[i].changes.count) changes and \(w.nodes[i].reads.count) reads after the drain")
        }
        return (w.broken, w)
    }

    @Test func overFiveHundredSeeds() {
        var succeeded = 0, failed = 0, busy = 0, reads = 0
        let failures = Seeds.each(0..<500) { seed in
            let (problems, w) = Self.run(seed: seed)
            succeeded += w.succeeded; failed += w.failed; busy += w.busy; reads += w.readsServed
            return problems
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("router-sim: 500 seeds, \(succeeded) changes applied, \(reads) reads served, \(failed) failed at their deadline, \(busy) refused busy")
        #expect(succeeded > 100_000 && reads > 20_000 && failed > 1_000 && busy > 1_000)
    }
}
