import ArgumentParser
import Control
import Foundation
import Node

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the cluster's Raft group and members' health as this node sees them.",
        discussion: "Exits 1 when the cluster is unhealthy (no leader, quorum lost or at risk), 2 when the node cannot be asked.")

    @Option(name: .long, help: "Data directory of the local node (holds its admin address and token).")
    var dataDir = ".stacks"

    @Option(name: .long, help: "table or json.")
    var format = "table"

    @Flag(name: .long, help: "Redraw whenever the status changes (Ctrl-C stops).")
    var watch = false

    func validate() throws {
        guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
    }

    func run() throws {
        var healthy = true
        do {
            let client = try AdminClient(dataDir: dataDir)
            try Screen.show(watch: watch, client: client, path: "/v1/status", wait: 5) {
                let status = try JSONDecoder().decode(ClusterStatus.self, from: $0)
                healthy = status.healthy
                return try render(status)
            }
        } catch let e as CLIError {
            FileHandle.standardError.write(Data("stacks: \(e)\n".utf8))
            throw ExitCode(2)  // the node cannot be asked
        }
        if !healthy { throw ExitCode(1) }
    }

    func render(_ s: ClusterStatus) throws -> String {
        if format == "json" {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            return String(decoding: try enc.encode(s), as: UTF8.self) + "\n"
        }
        var out =
            "cluster \(s.clusterID.isEmpty ? "(not initialized)" : s.clusterID)  self \(s.selfName)  leader \(s.leader ?? "none")  "
            + "term \(s.term)  commit \(s.commitIndex)  applied \(s.appliedIndex)  voters \(s.voters) (quorum \(s.quorum))\n"
        let rows =
            [["NAME", "RAFT", "GOSSIP", "RAFT ADDRESS", "LAST CONTACT", "MATCH", "USED", "FREE", "SCRUB"]]
            + s.nodes.map { n in
                [
                    n.name, n.raftRole, n.status, n.raftAddress ?? "-",
                    n.lastContactMs.map { $0 < 1000 ? "\($0)ms" : String(format: "%.1fs", Double($0) / 1000) } ?? "-",
                    n.matchIndex.map(String.init) ?? "-", n.usedBytes.map(Self.size) ?? "-", n.freeBytes.map(Self.size) ?? "-", Self.scrub(n),
                ]
            }
        out += Table.render(rows)
        if let l = s.layout {
            let moving = l.migrating == 0 ? "" : ", \(l.migrating) earlier version\(l.migrating == 1 ? "" : "s") still consulted while data moves"
            out += "layout version \(l.version): scheme \(l.scheme) over \(l.members) node\(l.members == 1 ? "" : "s")\(moving) (stacks layout show)\n"
        }
        if let d = s.data {
            out +=
                "objects \(d.objects): \(d.objects - min(d.objects, d.degraded)) fully redundant, \(d.degraded) degraded, \(d.atRisk) at risk, "
                + "\(d.repairing) being repaired; \(Self.size(d.usedBytes)) used, \(Self.size(d.freeBytes)) free\n"
            if let r = d.rebalance {
                let eta = r.etaSeconds.map { ", about \($0) s left" } ?? ""
                out +=
                    "rebalance: \(r.partitionsChanged) of \(r.partitions) partitions changed; \(r.keysLeft) keys (\(Self.size(r.bytesLeft))) left to move, "
                    + "\(Self.size(r.bytesMoved)) moved at \(Self.size(r.bytesPerSecond))/s\(eta)\n"
            }
        }
        out +=
            "legend: RAFT leader|voter|learner|none (not in the group yet); GOSSIP alive|suspect|dead|left; "
            + "LAST CONTACT since this node heard it over Raft; MATCH log index stored there (leader's view); "
            + "USED, FREE and objects as of each node's last repair pass; SCRUB the pass under way and when a whole one last ended\n"
        out += s.healthy ? "health: ok\n" : s.problems.map { "health: \($0)\n" }.joined()
        return out
    }

    /// `37% (last full 14:02:11)`: the scrub pass under way, and the last whole one (local time).
    static func scrub(_ n: ClusterStatus.Node) -> String {
        guard let total = n.scrubTotalBytes else { return "-" }
        let done = total == 0 ? 100 : Int(min(100, Double(n.scrubbedBytes ?? 0) * 100 / Double(total)))
        guard let last = n.lastFullScrubS else { return "\(done)%" }
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return "\(done)% (last full \(f.string(from: Date(timeIntervalSince1970: Double(last)))))"
    }

    /// Bytes in binary units, as `du -h` prints them.
    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(bytes), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(bytes) B" : String(format: "%.1f", v) + " " + units[u]
    }
}
