import Cluster
import Determinism
import Raft
import Testing

/// Voter management over random joins, crashes, restarts, graceful leaves and gossip flaps, with
/// zones: its own changes never cost the quorum, and once things settle it converges to
/// min(target, healthy nodes made odd) healthy voters spread over as many zones as it can.
@Suite struct VoterPolicyTests {
    static let grace = Span.seconds(10)
    static let step = Span.milliseconds(500)

    struct World {
        var rng: SeededRandom
        var now = Instant(nanoseconds: 0)
        var voters: Set<String> = ["n0"]
        var learners: Set<String> = []
        var nodes: [String: VoterPolicy.Node] = [:]
        /// Learners' logs catch up a few steps after they are added.
        var caughtUpAt: [String: Instant] = [:]
        var zones: [String: String] = [:]

        func up(_ n: String) -> Bool { n == "n0" || nodes[n].map { $0.health == .alive || $0.health == .suspect } ?? false }
        var upVoters: Int { voters.filter(up).count }
        static func quorum(_ n: Int) -> Int { n / 2 + 1 }

        mutating func set(_ n: String, _ h: VoterPolicy.Node.Health) {
            nodes[n] = VoterPolicy.Node(health: h, since: now, zone: zones[n])
        }

        /// One step of the policy (the leader, n0, is never the one that fails: leader changes are
        /// Raft's business, not this policy's). Returns what broke, if anything.
        mutating func runPolicy(_ policy: VoterPolicy) -> String? {
            let match = Dictionary(uniqueKeysWithValues: learners.map { ($0, (caughtUpAt[$0].map { now >= $0 } ?? false) ? LogIndex(10) : LogIndex(0)) })
            let quorate = upVoters >= Self.quorum(voters.count)
            let changes = policy.plan(
                .init(
                    leader: "n0", voters: voters, learners: learners, nodes: nodes, match: match,
                    commit: LogIndex(10), clusterID: "c", now: now))
            if changes.count > 1 { return "\(changes.count) changes at once" }
            guard let change = changes.first else { return nil }
            switch change {
            case .addLearner(let n):
                guard !voters.contains(n), learners.insert(n).inserted else { return "added \(n), already a member" }
                caughtUpAt[n] = now + Span.seconds(Double(rng.next() % 4))
            case .addVoter(let n):
                guard learners.remove(n) != nil else { return "promoted \(n), not a learner" }
                voters.insert(n)
            case .remove(let n):
                guard n != "n0" else { return "removed the leader" }
                guard voters.remove(n) != nil || learners.remove(n) != nil else { return "removed \(n), not a member" }
            }
            if quorate && upVoters < Self.quorum(voters.count) { return "\(change) lost the quorum (\(upVoters) of \(voters.count) up)" }
            // One over: a zone swap adds before it retires.
            if voters.count > policy.target + 1 { return "\(voters.count) voters, target \(policy.target)" }
            return nil
        }
    }

    static func run(seed: UInt64) -> [String] {
        var w = World(rng: SeededRandom(seed: seed))
        let size = 1 + Int(w.rng.next() % 9), zoneCount = 1 + Int(w.rng.next() % 4)
        let target = [1, 3, 5, 7][Int(w.rng.next() % 4)]
        let policy = VoterPolicy(target: target, grace: grace)
        let names = (0..<size).map { "n\($0)" }
        for n in names { w.zones[n] = "z\(w.rng.next() % UInt64(zoneCount))" }
        w.set("n0", .alive)
        var flapping: Set<String> = []
        // Churn: 400 steps (200 s) of random events among the nodes other than the leader.
        for _ in 0..<400 {
            w.now = w.now + step
            for n in flapping { w.set(n, .alive) }
            flapping = []
            if size > 1, w.rng.next() % 4 == 0 {
                let n = names[1 + Int(w.rng.next() % UInt64(size - 1))]
                switch (w.nodes[n]?.health, w.rng.next() % 5) {
                case (nil, _), (.dead?, _), (.left?, _): w.set(n, .alive)  // joins, or comes back
                case (.alive?, 0): w.set(n, .suspect); flapping.insert(n)  // a false suspicion
                case (.alive?, 1): w.set(n, .left)
                case (.alive?, _), (.suspect?, _): w.set(n, .dead)
                }
            }
            if let broken = w.runPolicy(policy) { return ["seed \(seed): \(broken)"] }
        }
        // Quiet: every node stays as it is; after the grace and the catch-up the policy settles.
        for n in flapping { w.set(n, .alive) }
        for _ in 0..<200 {
            w.now = w.now + step
            if let broken = w.runPolicy(policy) { return ["seed \(seed): \(broken)"] }
        }
        var problems: [String] = []
        let alive = Set(names.filter { $0 == "n0" || w.nodes[$0]?.health == .alive })
        let odd = alive.count % 2 == 0 ? alive.count - 1 : alive.count
        let want = max(1, min(target, odd))
        if !w.voters.isSubset(of: alive) { problems.append("seed \(seed): voters \(w.voters.sorted()) include nodes down past the grace") }
        if w.voters.count != want { problems.append("seed \(seed): \(w.voters.count) voters, want \(want) of \(alive.count) alive (target \(target))") }
        let zonesAlive = Set(alive.compactMap { w.zones[$0] }), zonesVoting = Set(w.voters.compactMap { w.zones[$0] })
        if zonesVoting.count < min(w.voters.count, zonesAlive.count) {
            problems.append("seed \(seed): voters in \(zonesVoting.count) zones, \(zonesAlive.count) zones alive")
        }
        return problems
    }

    @Test func overFiveHundredSeeds() {
        var problems: [String] = []
        for seed in UInt64(0)..<500 { problems += Self.run(seed: seed) }
        #expect(problems.isEmpty, "\(problems.count) seeds failed: \(problems.prefix(10).joined(separator: "; "))")
    }
}
