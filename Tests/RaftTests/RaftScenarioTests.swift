import Foundation
import Simulation
import Testing

@testable import Raft

/// Raft scenarios as etcd writes them (`testdata/*.txt`): commands in, the exact trace of
/// messages, state changes and applied entries out. The network is a FIFO queue delivered by
/// `stabilize`, with no randomness but the cores' own seeded election timeouts.
/// `STACKS_REWRITE=1 swift test --filter RaftScenarioTests` rewrites the files; review the diff.
@Suite struct RaftScenarioTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/testdata"

    @Test(arguments: DataDriven.files(in: directory))
    func scenario(path: String) {
        var world = RaftScenario()
        let problems = DataDriven.check(path) { world.run($0) }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test func everyScenarioFileIsFound() {
        #expect(DataDriven.files(in: Self.directory).count >= 6)
    }
}

struct RaftScenario {
    var nodes: [String: RaftNode] = [:]
    var disks: [String: RaftSimulator.Disk] = [:]
    var applied: [String: LogIndex] = [:]
    var names: [String] = []
    /// The configuration the `nodes` command started from (a restart begins there, then the log).
    var initialVoters: [String] = []
    var queue: [Envelope] = []
    var isolated: Set<String> = []
    var out: [String] = []
    var settings = RaftSettings()

    static func describe(_ e: Entry) -> String {
        let body: String
        if e.kind == .config, let c = ConfigChange(decoding: e.data) {
            body = "\(c)"
        } else if e.data.isEmpty {
            body = "empty"
        } else {
            body = "\"\(String(decoding: e.data, as: UTF8.self))\""
        }
        return "\(e.index)@\(e.term) \(body)"
    }

    static func describe(_ m: RaftMessage) -> String {
        switch m {
        case .preVote(let t, let li, let lt): "PreVote term=\(t) last=\(li)@\(lt)"
        case .preVoteReply(let t, let g): "PreVoteReply term=\(t) \(g ? "granted" : "rejected")"
        case .vote(let t, let li, let lt, let transfer): "Vote term=\(t) last=\(li)@\(lt)\(transfer ? " transfer" : "")"
        case .voteReply(let t, let g): "VoteReply term=\(t) \(g ? "granted" : "rejected")"
        case .append(let t, let pi, let pt, let es, let c, _):
            "App term=\(t) prev=\(pi)@\(pt) commit=\(c)" + (es.isEmpty ? "" : " entries=[\(es.map(describe).joined(separator: ", "))]")
        case .appendReply(let t, let ok, let i, _): "AppReply term=\(t) \(ok ? "ok" : "rejected") index=\(i)"
        case .timeoutNow(let t): "TimeoutNow term=\(t)"
        case .installSnapshot(let t, let s, let off, let done): "Snapshot term=\(t) at=\(s.index)@\(s.term) offset=\(off)\(done ? " done" : "")"
        case .installSnapshotReply(let t, let i, let off, let done): "SnapshotReply term=\(t) index=\(i) offset=\(off)\(done ? " done" : "")"
        }
    }

    func state(_ n: String) -> String {
        guard let node = nodes[n] else { return "\(n) down" }
        let leader = node.isLeader ? "" : node.leader.map { "(\($0))" } ?? ""
        let learner = node.learners.contains(n) ? " learner" : ""
        return "\(n) \(node.role.name)\(leader)\(learner) term=\(node.term) commit=\(node.commit) last=\(node.lastIndex)"
    }

    /// Runs `body` on node `n`, handles its Ready, prints any change of role, term or leader.
    mutating func on(_ n: String, _ body: (inout RaftNode) -> Ready?) {
        on(n) { (node: inout RaftNode) -> (Ready?, String?) in (body(&node), nil) }
    }

    /// The same, for a call that may be refused: `body` gives the Ready and what to print.
    mutating func on(_ n: String, _ body: (inout RaftNode) -> (Ready?, String?)) {
        guard var node = nodes[n] else { out.append("\(n) is down"); return }
        let before = (node.role.name, node.term, node.leader)
        let (r, note) = body(&node)
        nodes[n] = node
        if let note { out.append(note) }
        if (node.role.name, node.term, node.leader) != before { out.append(state(n)) }
        if let r { handle(n, r) }
    }

    mutating func handle(_ n: String, _ r: Ready) {
        var d = disks[n] ?? RaftSimulator.Disk()
        if let hs = r.hardState { d.hardState = hs }
        if let s = r.snapshot { d.snapshot = s; d.log = nodes[n]!.log; applied[n] = s.index; out.append("\(n) installed snapshot at \(s.index)@\(s.term)") }
        if let e = d.write(truncateAfter: r.truncateAfter, entries: r.entries) { out.append("\(n) wrote entry \(e.index) past its log end") }
        disks[n] = d
        // A message from or to an isolated node is lost when sent (and when delivered, if the
        // isolation began while it was queued).
        queue += r.messages.filter { !isolated.contains($0.from) && !isolated.contains($0.to) }
        for e in r.committed {
            applied[n] = e.index
            out.append("\(n) applied \(Self.describe(e))")
        }
        for rs in r.readStates { out.append("\(n) read \(rs.id) at index \(rs.index)") }
    }

    mutating func deliver() {
        var rounds = 0
        while !queue.isEmpty, rounds < 10_000 {
            rounds += 1
            let env = queue.removeFirst()
            let line = "\(env.from)→\(env.to) \(Self.describe(env.message))"
            if isolated.contains(env.from) || isolated.contains(env.to) { out.append(line + " (dropped: isolated)"); continue }
            guard nodes[env.to] != nil else { out.append(line + " (dropped: down)"); continue }
            out.append(line)
            on(env.to) { $0.step(env) }
        }
    }

    mutating func run(_ c: DataDriven.Command) -> String {
        out = []
        let p = c.positional
        switch c.name {
        case "nodes":
            if let e = c.value("election") { settings.electionTicks = Int(e)! }
            initialVoters = p
            for (i, n) in p.enumerated() {
                names.append(n)
                nodes[n] = RaftNode(id: n, peers: p, settings: settings, seed: UInt64(i + 1))
                disks[n] = RaftSimulator.Disk()
            }
            return p.map(state).joined(separator: "\n")
        case "tick":
            for _ in 0..<(Int(c.value("times") ?? "1") ?? 1) { for n in p { on(n) { $0.tick() } } }
        case "campaign":
            // Ticks the node until it stands (at most three election timeouts).
            let n = p[0]
            for _ in 0..<(3 * settings.electionTicks * 2) {
                on(n) { $0.tick() }
                if let node = nodes[n], node.role.name != "follower" || node.isLeader { break }
            }
        case "stabilize":
            deliver()
        case "heartbeat":
            // The leader's heartbeat interval, then everything delivered.
            for _ in 0..<settings.heartbeatTicks { on(p[0]) { $0.tick() } }
            deliver()
        case "propose":
            on(p[0]) { n -> (Ready?, String?) in
                guard let (i, r) = n.propose(Array(p[1].utf8)) else { return (nil, "\(p[0]) refused the proposal") }
                return (r, "\(p[0]) proposed at index \(i)")
            }
        case "read-index":
            on(p[0]) { n -> (Ready?, String?) in
                guard let r = n.readIndex(id: UInt64(p[1])!) else { return (nil, "\(p[0]) cannot serve a read index yet") }
                return (r, nil)
            }
        case "transfer":
            on(p[0]) { n -> (Ready?, String?) in
                guard let r = n.transferLeadership(to: p[1]) else { return (nil, "\(p[0]) refused to transfer") }
                return (r, nil)
            }
        case "add-learner", "add-voter", "remove":
            let change: ConfigChange = c.name == "add-learner" ? .addLearner(p[1]) : c.name == "add-voter" ? .addVoter(p[1]) : .remove(p[1])
            if c.name == "add-learner", nodes[p[1]] == nil {
                names.append(p[1])
                nodes[p[1]] = RaftNode(id: p[1], peers: [], settings: settings, seed: UInt64(names.count))
                disks[p[1]] = RaftSimulator.Disk()
            }
            on(p[0]) { n -> (Ready?, String?) in
                guard let (i, r) = n.proposeConfigChange(change) else { return (nil, "\(p[0]) refused \(change)") }
                return (r, "\(p[0]) proposed \(change) at index \(i)")
            }
        case "compact":
            let n = p[0], through = applied[n] ?? .zero
            if var node = nodes[n], let s = node.compact(through: through, data: Array("state@\(through)".utf8)) {
                nodes[n] = node
                disks[n]!.snapshot = s
                disks[n]!.log = node.log
                out.append("\(n) compacted through \(s.index)@\(s.term)")
            } else {
                out.append("\(n) had nothing to compact")
            }
        case "isolate":
            isolated.formUnion(p)
        case "heal":
            isolated = []
        case "crash":
            for n in p { nodes[n] = nil; out.append("\(n) down") }
        case "restart":
            for n in p {
                let d = disks[n]!
                nodes[n] = RaftNode(
                    id: n, peers: initialVoters, hardState: d.hardState, snapshot: d.snapshot, log: d.log, settings: settings,
                    seed: UInt64(names.firstIndex(of: n)! + 100))
                applied[n] = d.snapshot?.index ?? .zero
                out.append(state(n))
            }
        case "unreachable":
            on(p[0]) { $0.peerUnreachable(p[1]) }
        case "status":
            return (p.isEmpty ? names : p).map(state).joined(separator: "\n")
        default:
            return "unknown command \(c.name)"
        }
        return out.joined(separator: "\n")
    }
}

extension RaftNode.Role {
    var name: String {
        switch self {
        case .follower: "follower"
        case .preCandidate: "pre-candidate"
        case .candidate: "candidate"
        case .leader: "leader"
        }
    }
}
