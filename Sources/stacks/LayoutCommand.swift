import ArgumentParser
import Cluster
import Foundation
import Node

struct LayoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layout", abstract: "Show or change where data lives: nodes, zones, weights, erasure scheme.",
        discussion: """
            The leader keeps the layout in step with membership by itself: a node that joins gets a share, one dead \
            longer than data.remove_after loses it. Operators stage changes (set-weight, drain, set-scheme) and \
            commit them together as one new version with apply; revert drops what is staged.
            """,
        subcommands: [Show.self, SetWeight.self, Drain.self, SetScheme.self, Apply.self, Revert.self], defaultSubcommand: Show.self)

    struct Options: ParsableArguments {
        @Option(name: .long, help: "Data directory of the local node.")
        var dataDir = ".stacks"
        @Option(name: .long, help: "table or json.")
        var format = "table"
        func validate() throws {
            guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        }
    }

    static func show(_ v: LayoutView, _ options: Options) throws {
        if options.format == "json" {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(v), as: UTF8.self))
            return
        }
        let requested = v.requested == "auto" ? "auto" : "asked \(v.requested)"
        print("layout version \(v.version)  scheme \(v.scheme) (\(requested))  partitions \(v.partitions)")
        let total = max(1, v.members.reduce(0) { $0 + $1.slots })
        let rows =
            [["NAME", "ZONE", "WEIGHT", "SHARE", "STAGED"]]
            + v.members.map { m in
                [
                    m.name, m.zone.isEmpty ? "-" : m.zone, "\(m.weight)", String(format: "%.1f%%", 100 * Double(m.slots) / Double(total)),
                    m.stagedWeight.map { $0 == 0 ? "drain" : "weight \($0)" } ?? "-",
                ]
            }
        print(Table.render(rows), terminator: "")
        if let s = v.stagedScheme { print("staged: scheme \(s)") }
        if v.members.contains(where: { $0.stagedWeight != nil }) || v.stagedScheme != nil { print("staged changes take effect with: stacks layout apply") }
        if let buckets = v.buckets, !buckets.isEmpty {
            let width = ErasureScheme(parsing: v.scheme)?.width ?? 0
            let own = buckets.sorted { $0.key < $1.key }.map { b in
                "\(b.key) \(b.value)" + ((ErasureScheme(parsing: b.value)?.width ?? 0) > width ? " (wider than the layout: \(v.scheme) for now)" : "")
            }
            print("buckets with their own scheme: " + own.joined(separator: ", "))
        }
        if !v.migrating.isEmpty { print("still consulted while data moves: version \(v.migrating.map(String.init).joined(separator: ", "))") }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the current layout and what is staged.")
        @OptionGroup var options: Options
        func run() throws { try LayoutCommand.show(try AdminClient(dataDir: options.dataDir).get("/v1/layout", as: LayoutView.self), options) }
    }

    static func stage(_ body: LayoutStageBody, _ options: Options) throws {
        try show(try AdminClient(dataDir: options.dataDir).post("/v1/layout/stage", json: body, as: LayoutView.self), options)
    }

    struct SetWeight: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-weight", abstract: "Stage a node's capacity weight (its share of data).")
        @OptionGroup var options: Options
        @Argument(help: "Node name.") var node: String
        @Argument(help: "Weight, 0 to 1000000 (0 drains).") var weight: UInt32
        func run() throws { try LayoutCommand.stage(LayoutStageBody(weights: [node: weight]), options) }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stage weight 0 for a node: once applied it takes no new data and its data moves off.")
        @OptionGroup var options: Options
        @Argument(help: "Node name.") var node: String
        func run() throws { try LayoutCommand.stage(LayoutStageBody(weights: [node: 0]), options) }
    }

    struct SetScheme: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-scheme", abstract: "Stage the erasure scheme for new objects: K+M, or auto (chosen by cluster size).")
        @OptionGroup var options: Options
        @Argument(help: "K+M (for example 4+2) or auto.") var scheme: String
        func run() throws { try LayoutCommand.stage(LayoutStageBody(scheme: scheme), options) }
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Commit the staged changes as one new layout version.")
        @OptionGroup var options: Options
        func run() throws {
            let v = try AdminClient(dataDir: options.dataDir).post("/v1/layout/apply", json: [String: String](), as: LayoutView.self)
            try LayoutCommand.show(v, options)
        }
    }

    struct Revert: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drop the staged changes.")
        @OptionGroup var options: Options
        func run() throws {
            try LayoutCommand.show(try AdminClient(dataDir: options.dataDir).post("/v1/layout/revert", json: [String: String](), as: LayoutView.self), options)
        }
    }
}

struct LayoutStageBody: Encodable {
    var weights: [String: UInt32]?
    var scheme: String?
}
