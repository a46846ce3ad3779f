import Gossip
import Simulation
import Testing

@testable import Membership

/// The keyring rollout (`KeyringAsk` asking every member, `KeyringResponder` answering) over a
/// network that loses, duplicates and delays, with a clock per node (a few seconds apart, drifting;
/// in some seeds one node's clock is minutes off) and an attacker holding the gossip key who
/// captured requests and replays them at random later times. After every step: no node applies a
/// request twice, none applies one whose clock is over the skew bound from the sender's, the
/// replay memory stays bounded, and a finished operation's report is true to what each member did.
/// On a lossless network every member with a sane clock answers.
@Suite struct KeyringRolloutTests {
    static let epoch: Int64 = 1_800_000_000_000_000_000
    static let timeout = Span.seconds(2)

    struct Node {
        var clock: SimClock
        var keyring: Keyring
        var keys: [[UInt8]] { keyring.keys }
        var responder = KeyringResponder()
        /// Request id → times applied.
        var applied: [UInt64: Int] = [:]
    }

    struct Ask {
        var node: Int
        var core: KeyringAsk
        var trueDeadline: Instant
    }

    struct World {
        var rng: SeededRandom
        var t = Instant(nanoseconds: 0)
        var nodes: [Node] = []
        var net = SimNetwork<[UInt8]>()
        var ask: Ask?
        /// (request bytes, the node it was for), as the attacker recorded them.
        var captured: [([UInt8], Int)] = []
        var broken: [String] = []
        var finished = 0, answered = 0, replays = 0, refusedSkew = 0

        var attacker: Int { nodes.count }
        func now(_ i: Int) -> Instant { nodes[i].clock.local(t) }
        func wall(_ i: Int) -> Int64 { KeyringRolloutTests.epoch + nodes[i].clock.local(t).nanoseconds }
        func address(_ i: Int) -> String { "n\(i)" }
        func index(_ address: String) -> Int { Int(address.dropFirst())! }

        /// The node's real keyring takes the operation; nil, or why it refused.
        static func apply(_ op: KeyringOp, _ key: [UInt8], to keyring: inout Keyring) -> String? {
            do { try keyring.apply(op, key); return nil } catch { return "\(error)" }
        }

        mutating func send(_ bytes: [UInt8], from: Int, to: Int) { net.send(bytes, from: from, to: to, now: t, rng: &rng) }

        mutating func run(_ commands: [KeyringAsk.Command]) {
            guard let a = ask else { return }
            for c in commands {
                switch c {
                case .send(let bytes, let to): send(bytes, from: a.node, to: index(to))
                case .finished: report(a)
                }
            }
        }

        /// A finished operation's report against what the members did.
        mutating func report(_ a: Ask) {
            finished += 1
            ask = nil
            let c = a.core
            if t > a.trueDeadline + Span.milliseconds(60) { broken.append("finished at \(t), deadline \(a.trueDeadline)") }
            let everyone = Set(nodes.indices.map(address))
            if Set(c.answers.keys).union(c.pending.keys) != everyone || !Set(c.answers.keys).isDisjoint(with: c.pending.keys) {
                broken.append("report covers \(c.answers.keys.sorted()) + \(c.pending.keys.sorted()), not every member once")
            }
            for (name, answer) in c.answers where name != c.me {
                let i = index(name)
                if nodes[i].applied[c.id] != 1 { broken.append("\(name) reported as answering \(c.id) but applied it \(nodes[i].applied[c.id] ?? 0) times") }
                if answer.error == nil, c.op == .install, !answer.keys.contains(c.key) { broken.append("\(name) said yes to install without the key") }
            }
            answered += c.answers.count - 1
            // Lossless: everyone whose clock is within the bound of the asker's answers.
            if net.lossRate == 0 {
                for name in c.pending.keys {
                    let i = index(name)
                    let apart = abs(nodes[i].clock.offset.nanoseconds - nodes[a.node].clock.offset.nanoseconds)
                    if apart < KeyringResponder.maxClockSkew.nanoseconds / 2 { broken.append("lossless network, sane clock, yet \(name) never answered") }
                }
            }
        }

        mutating func deliver(_ d: SimNetwork<[UInt8]>.Delivery) {
            guard d.to != attacker else { return }
            guard let m = try? KeyringMessage.decode(d.message) else { broken.append("undecodable message"); return }
            if case .reply = m.body {
                if let a = ask, a.node == d.to {
                    var core = a.core
                    let commands = core.receive(m)
                    ask!.core = core
                    run(commands)
                }
                return
            }
            if d.from != attacker, rng.chance(0.2) { captured.append((d.message, d.to)) }
            let i = d.to
            switch nodes[i].responder.receive(m, now: now(i), wallClock: wall(i)) {
            case .again(let reply): send(reply, from: i, to: d.from)
            case .refuse(let reason): if reason == "keyring_clock_skew" { refusedSkew += 1 }
            case .apply(let op, let key):
                if abs(wall(i) - m.sentAt) > KeyringResponder.maxClockSkew.nanoseconds {
                    broken.append("n\(i) applied request \(m.id) sent \((wall(i) - m.sentAt) / 1_000_000_000) s from its clock")
                }
                nodes[i].applied[m.id, default: 0] += 1
                if nodes[i].applied[m.id]! > 1 { broken.append("n\(i) applied request \(m.id) twice") }
                let error = Self.apply(op, key, to: &nodes[i].keyring)
                let reply = nodes[i].responder.answer(m, me: address(i), error: error, keys: nodes[i].keys, now: now(i), wallClock: wall(i))
                send(reply, from: i, to: d.from)
            }
            if nodes[i].responder.remembered > KeyringResponder.maxRemembered { broken.append("n\(i) remembers \(nodes[i].responder.remembered) requests") }
        }

        /// A random operation from a random node, its own change first as the shell does.
        mutating func startAsk(keyPool: [[UInt8]]) {
            let from = rng.below(nodes.count)
            let op = [KeyringOp.list, .install, .install, .use, .remove][rng.below(5)]
            let key = op == .list ? [] : keyPool[rng.below(keyPool.count)]
            guard Self.apply(op, key, to: &nodes[from].keyring) == nil else { return }  // refused locally: nobody asked
            let targets = Dictionary(uniqueKeysWithValues: nodes.indices.map { (address($0), address($0)) })
            var core = KeyringAsk(
                op: op, key: key, id: rng.next(), me: address(from), mine: .init(error: nil, keys: nodes[from].keys),
                targets: targets, now: now(from), timeout: KeyringRolloutTests.timeout)
            ask = Ask(node: from, core: core, trueDeadline: t + KeyringRolloutTests.timeout * 1.01)
            let commands = core.start(wallClock: wall(from))
            ask!.core = core
            run(commands)
        }
    }

    static func run(seed: UInt64) -> (problems: [String], world: World) {
        var w = World(rng: SeededRandom(seed: seed))
        let size = 1 + w.rng.below(7)
        let keyPool = (0..<3).map { k in [UInt8](repeating: UInt8(k + 1), count: 32) }
        let badClock = size > 2 && w.rng.chance(0.3) ? w.rng.below(size) : nil
        for i in 0..<size {
            var clock = SimClock.random(maxOffset: .seconds(20), maxDriftPPM: 500, rng: &w.rng)
            if i == badClock { clock.offset = Span.seconds(Double(w.rng.chance(0.5) ? 100 : -100)) }
            w.nodes.append(Node(clock: clock, keyring: try! Keyring(primary: keyPool[0])))
        }
        let lossy = w.rng.chance(0.5)
        w.net.lossRate = lossy ? Double(w.rng.below(40)) / 100 : 0
        w.net.duplicateRate = Double(w.rng.below(30)) / 100
        w.net.delayMin = .milliseconds(1)
        w.net.delayMax = .milliseconds(1 + Int64(w.rng.below(400)))
        let end = Instant(nanoseconds: 0) + Span.seconds(400)
        var nextAsk = w.t, nextReplay = w.t + Span.seconds(1)
        let step = Span.milliseconds(50)
        while w.t < end {
            // Next event: a delivery, the ask's tick, a new ask, a replay.
            var next = min(nextReplay, end, w.ask == nil ? nextAsk : w.t + step)
            if let at = w.net.nextAt { next = min(next, at) }
            w.t = max(w.t, next)
            while let d = w.net.next(dueBy: w.t) { w.deliver(d) }
            if let a = w.ask {
                var core = a.core
                let commands = core.tick(now: w.now(a.node), wallClock: w.wall(a.node))
                w.ask!.core = core
                w.run(commands)
            }
            if w.ask == nil, w.t >= nextAsk {
                w.startAsk(keyPool: keyPool)
                nextAsk = w.t + w.rng.span(.seconds(1), .seconds(30))
            }
            if w.t >= nextReplay {
                if !w.captured.isEmpty {
                    let (bytes, to) = w.captured[w.rng.below(w.captured.count)]
                    w.replays += 1
                    w.send(bytes, from: w.attacker, to: to)
                }
                nextReplay = w.t + w.rng.span(.milliseconds(100), .seconds(40))
            }
            if !w.broken.isEmpty { return (w.broken, w) }
        }
        return (w.broken, w)
    }

    @Test func overFiveHundredSeeds() {
        var finished = 0, answered = 0, replays = 0, refusedSkew = 0
        let failures = Seeds.each(0..<500) { seed in
            let (problems, w) = Self.run(seed: seed)
            finished += w.finished; answered += w.answered; replays += w.replays; refusedSkew += w.refusedSkew
            return problems
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("keyring-sim: 500 seeds, \(finished) operations finished, \(answered) member answers, \(replays) replays, \(refusedSkew) refused for clock skew")
        // Not vacuous: the runs exercised what the invariants are about.
        #expect(finished > 2_000 && answered > 5_000 && replays > 2_000 && refusedSkew > 100)
    }
}
