import Foundation
import Simulation
import Testing

@testable import Gossip

/// Membership scenarios as etcd writes Raft's (`testdata/*.txt`): commands in, the exact trace of
/// membership events (when, who saw what) out, on the kit's simulated network (1–5 ms delays
/// drawn from the scenario's seed). `STACKS_REWRITE=1 swift test --filter GossipScenarioTests`
/// rewrites the files; review the diff.
@Suite struct GossipScenarioTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/testdata"

    @Test(arguments: DataDriven.files(in: directory))
    func scenario(path: String) {
        var world = GossipScenario()
        let problems = DataDriven.check(path) { world.run($0) }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test func everyScenarioFileIsFound() {
        #expect(DataDriven.files(in: Self.directory).count >= 3)
    }
}

/// Events seen while a command ran (the simulator's observer writes here).
final class EventLog: @unchecked Sendable {  // used on the test's thread only
    var lines: [String] = []
}

struct GossipScenario {
    var sim = Simulator(seed: 1)
    let log = EventLog()

    static func index(_ name: String) -> Int { Int(name.dropFirst())! }

    static func duration(_ s: String) -> Span {
        if s.hasSuffix("ms") { return .milliseconds(Int64(s.dropLast(2))!) }
        return .seconds(Double(s.dropLast())!)
    }

    mutating func run(_ c: DataDriven.Command) -> String {
        log.lines = []
        let p = c.positional
        switch c.name {
        case "nodes":
            sim = Simulator(seed: UInt64(c.value("seed") ?? "1")!)
            var settings = SWIMSettings()
            if c.value("lifeguard") == "false" { settings.lifeguard = false }
            let log = self.log
            sim.observe = { i, ev, t in
                let (what, m): (String, Member) =
                    switch ev {
                    case .joined(let m): ("joined", m)
                    case .updated(let m): ("updated", m)
                    case .suspected(let m): ("suspect", m)
                    case .failed(let m): ("dead", m)
                    case .left(let m): ("left", m)
                    }
                log.lines.append(
                    String(format: "%.3fs", Span(nanoseconds: t.nanoseconds).seconds) + " n\(i) sees \(m.name) \(what) (incarnation \(m.incarnation))")
            }
            for _ in 0..<Int(p[0])! { sim.addNode(settings: settings) }
        case "join":
            sim.join(Self.index(p[0]), seeds: p.dropFirst().map(Self.index))
        case "run":
            sim.run(until: sim.now + Self.duration(p[0]))
        case "crash":
            for n in p { sim.crash(Self.index(n)) }
        case "leave":
            sim.leave(Self.index(p[0]))
        case "isolate":
            // The named nodes in one group, the rest in another.
            let cut = Set(p.map(Self.index))
            sim.groups = sim.nodes.indices.map { cut.contains($0) ? 1 : 0 }
        case "heal":
            sim.groups = nil
        case "slow":
            sim.setSlowness(Self.index(p[0]), Self.duration(p[1]))
        case "awareness":
            return p.map { "\($0) awareness \(sim.nodes[Self.index($0)].swim.awareness)" }.joined(separator: "\n")
        case "status":
            let s = sim.nodes[Self.index(p[0])].swim
            return s.members.sorted { $0.name < $1.name }.map { "\($0.name) \($0.status) incarnation \($0.incarnation)" }.joined(separator: "\n")
        default:
            return "unknown command \(c.name)"
        }
        return log.lines.joined(separator: "\n")
    }
}
