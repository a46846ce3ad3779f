import ArgumentParser
import Foundation
import Node

@main
struct Stacks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stacks",
        abstract: "A peer-to-peer, storage-first cluster: S3 object storage and VM scheduling in one binary.",
        subcommands: [
            AgentCommand.self, StatusCommand.self, MembersCommand.self, LayoutCommand.self, BenchCommand.self, JoinCommand.self, TagsCommand.self,
            KeyringCommand.self, TokenCommand.self, NodeCommand.self, KeyCommand.self,
            KeygenCommand.self, DebugCommand.self,
        ])
}

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent", abstract: "Run a node.",
        discussion: "Use --config FILE for a node described by a TOML file, or --dev for the embedded single-node default.")

    @Option(name: .long, help: "TOML config file of this node.")
    var config: String?

    @Flag(name: .long, help: "Run the embedded development default: one node, data under ./.stacks/, S3 on 127.0.0.1:9000.")
    var dev = false

    @Option(name: .long, help: "With --dev: the data directory.")
    var dataDir: String?

    @Option(name: .long, help: "With --dev: the S3 listen address host:port.")
    var s3Listen: String?

    @Option(name: .long, help: "With --dev: the gossip UDP address host:port.")
    var gossipListen: String?

    @Option(name: .long, help: "With --dev: the admin API address host:port.")
    var adminListen: String?

    @Option(name: .long, help: "With --dev: the Raft TCP address host:port.")
    var raftListen: String?

    @Option(name: .long, help: "With --dev: the Prometheus metrics address host:port.")
    var metricsListen: String?

    @Option(name: .long, help: "With --dev: the data connection's TCP address host:port.")
    var dataListen: String?

    @Option(name: .long, help: "With --dev: this node's name (default dev).")
    var name: String?

    @Option(
        name: .long,
        help:
            "Gossip address of a member to join through (repeatable; adds to the config's seeds). With --token: the one member's address (`stacks status`) to enrol through."
    )
    var join: [String] = []

    @Option(
        name: .long,
        help:
            "A join token (`stacks token create`): enrol through --join on the first start, then run. Prefer --token-file or STACKS_TOKEN (`ps` shows a command line)."
    )
    var token: String?

    @Option(name: .long, help: "Read the join token from this file (its first line), or from standard input with -.")
    var tokenFile: String?

    /// --token, else --token-file, else the environment's STACKS_TOKEN.
    var joinToken: String? { get throws { try JoinCommand.readToken(token, file: tokenFile) } }

    /// `stacks join` leaves the node's config here: `stacks agent --data-dir DIR` runs it.
    var joinedConfig: String? {
        guard config == nil, !dev, let dataDir else { return nil }
        return "\(dataDir)/node.toml"
    }

    func validate() throws {
        if JoinCommand.tokenGiven(token, file: tokenFile) && join.count != 1 {
            throw ValidationError("--token needs exactly one --join SEED: a member's address from `stacks status`")
        }
        if let path = joinedConfig {
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("\(path) is missing: `stacks join SEED --token TOKEN --data-dir DIR` writes it (or give --config FILE or --dev)")
            }
            return
        }
        guard (config == nil) != !dev else { throw ValidationError("give exactly one of --config FILE or --dev") }
        if config != nil
            && (dataDir != nil || s3Listen != nil || gossipListen != nil || adminListen != nil || raftListen != nil || metricsListen != nil
                || dataListen != nil || name != nil)
        {
            throw ValidationError("--data-dir and the --*-listen options go with --dev; with --config put them in the file")
        }
    }

    func run() async throws {
        var nodeConfig: NodeConfig
        if let path = config ?? joinedConfig {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read config file \(path)")
            }
            do { nodeConfig = try NodeConfig(toml: String(decoding: data, as: UTF8.self), file: path) } catch {
                FileHandle.standardError.write(Data("stacks: \(error)\n".utf8))
                throw ExitCode(2)
            }
        } else {
            guard
                let c = NodeConfig.development(
                    dataDir: dataDir ?? ".stacks", s3Listen: s3Listen ?? "127.0.0.1:9000",
                    gossipListen: gossipListen ?? "127.0.0.1:7946", adminListen: adminListen ?? "127.0.0.1:9001",
                    raftListen: raftListen ?? "127.0.0.1:7100", metricsListen: metricsListen ?? "127.0.0.1:9002",
                    dataListen: dataListen ?? "127.0.0.1:7300")
            else {
                throw ValidationError(
                    "--s3-listen, --gossip-listen, --admin-listen, --raft-listen, --metrics-listen and --data-listen must be host:port, and --admin-listen a loopback address (admin.allow_remote in a config file serves it elsewhere)"
                )
            }
            nodeConfig = c
            if let name {
                guard NodeConfig.isValidName(name) else { throw ValidationError("--name must be 1-64 letters, digits, '-', '_' or '.'") }
                nodeConfig.name = name
            }
        }
        let agent = Agent(config: nodeConfig)
        let enrol = try joinToken.map { (seed: join[0], token: $0) }
        let config = nodeConfig
        try await agent.run(join: enrol == nil ? join : [], enrol: enrol, generateGossipKey: dev && enrol == nil) { endpoint, newKey in
            var lines = ["stacks: node \(config.name) serving S3 at \(endpoint) (region \(config.region)), data in \(config.dataDir)"]
            if let newKey {
                lines.append("stacks: created access key (shown once; also in \(config.dataDir)/credentials):")
                lines.append("  AWS_ACCESS_KEY_ID=\(newKey.id)")
                lines.append("  AWS_SECRET_ACCESS_KEY=\(newKey.secret)")
            }
            FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        }
    }
}
