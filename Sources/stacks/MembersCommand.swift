import ArgumentParser
import Foundation
import Membership
import Node
import Security

struct MembersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members", abstract: "List the cluster's members as this node sees them through gossip.")

    @Option(name: .long, help: "Data directory of the local node (holds its admin address and token).")
    var dataDir = ".stacks"

    @Option(name: .long, help: "Only members with this status: alive, suspect, dead or left.")
    var status: String?

    @Option(name: .long, help: "Only members with this tag (key=value); repeatable.")
    var tag: [String] = []

    @Option(name: .long, help: "table or json.")
    var format = "table"

    @Flag(name: .long, help: "Redraw whenever the membership changes (Ctrl-C stops).")
    var watch = false

    func validate() throws {
        guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        if let status, !["alive", "suspect", "dead", "left"].contains(status) {
            throw ValidationError("--status must be alive, suspect, dead or left")
        }
        for t in tag where !t.contains("=") { throw ValidationError("--tag wants key=value, got \(t)") }
    }

    func run() throws {
        let client = try AdminClient(dataDir: dataDir)
        try Screen.show(watch: watch, client: client, path: "/v1/members", wait: 30) {
            try render(try JSONDecoder().decode([MemberView].self, from: $0))
        }
    }

    func render(_ all: [MemberView]) throws -> String {
        let wanted = tag.map { t -> (String, String) in
            let kv = t.split(separator: "=", maxSplits: 1); return (String(kv[0]), kv.count > 1 ? String(kv[1]) : "")
        }
        let members = all.filter { m in
            (status == nil || m.status == status) && wanted.allSatisfy { m.tags[$0.0] == $0.1 }
        }.sorted { $0.name < $1.name }
        if format == "json" {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            return String(decoding: try enc.encode(members), as: UTF8.self) + "\n"
        }
        let rows =
            [["NAME", "ADDRESS", "STATUS", "INCARNATION", "TAGS"]]
            + members.map { m in
                [m.name, m.address, m.status, "\(m.incarnation)", m.tags.keys.sorted().map { "\($0)=\(m.tags[$0]!)" }.joined(separator: ",")]
            }
        return Table.render(rows)
    }
}

enum Screen {
    /// Prints the view at `path` as `render` draws it. With `watch` it asks again with the change
    /// version it showed, and the node answers when membership or the Raft group changed (or
    /// after `wait` seconds, so ages shown stay fresh); it redraws when the drawing differs.
    static func show(watch: Bool, client: AdminClient, path: String, wait: Int, _ render: (Data) throws -> String) throws {
        var last = "", version: UInt64?
        repeat {
            let (body, v) = try client.view(path, since: watch ? version : nil, wait: wait)
            let text = try render(body)
            if text != last {
                if watch { FileHandle.standardOutput.write(Data("\u{1B}[H\u{1B}[2J".utf8)) }
                FileHandle.standardOutput.write(Data(text.utf8))
                last = text
            }
            // A node that sends no version cannot be waited on: ask again in a second.
            if watch && v == nil { Thread.sleep(forTimeInterval: 1) }
            version = v
        } while watch
    }
}

enum Table {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { r in
            r.enumerated().map { i, cell in i == r.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined()
        }.joined(separator: "\n") + "\n"
    }
}

struct KeyringCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyring", abstract: "Manage the cluster's gossip encryption keys.",
        discussion: """
            Each command acts on every live member through the local node, which prints each member's answer and \
            exits 1 unless all answered yes. On a cluster whose nodes joined with tokens a change goes through the \
            cluster's Raft log, which only members receive (a member that was down applies it when back), and each \
            member's keyring tag (key fingerprints) shows what it holds; keyring messages over gossip are refused \
            there. On a cluster that shares a configured gossip.key, the change travels as gossip messages. Rotate a key without downtime: `install` the new key, `use` it, \
            `remove` the old one. `use` refuses (changing nothing) unless every live member holds the key, \
            `remove` unless no member seals with it. --local acts on the local node alone: for a member that \
            was down during a rotation.
            """,
        subcommands: [List.self, Install.self, Use.self, Remove.self])

    struct Options: ParsableArguments {
        @Option(name: .long, help: "Data directory of the local node.")
        var dataDir = ".stacks"
        @Flag(name: .long, help: "Only the local node's keyring.")
        var local = false
    }

    /// The key as an argument (visible in `ps` and shell history) or, better, from a file or stdin.
    struct KeyInput: ParsableArguments {
        @Argument(help: "The key, base64 of 32 bytes. Visible to other users in `ps` and kept in shell history: prefer --key-file.")
        var key: String?
        @Option(name: .long, help: "Read the key from this file (its first line), or from standard input with -.")
        var keyFile: String?

        func validate() throws {
            guard (key == nil) != (keyFile == nil) else { throw ValidationError("give the key either as an argument or with --key-file, not both or neither") }
        }

        func read() throws -> String {
            if let key { return key }
            let trimmed = try Self.firstLine(of: keyFile!, option: "--key-file")
            guard !trimmed.isEmpty else { throw ValidationError("--key-file \(keyFile!) holds no key") }
            return trimmed
        }

        /// The first line of `path` (standard input for -), trimmed: secrets kept off command lines.
        static func firstLine(of path: String, option: String) throws -> String {
            let data: Data
            if path == "-" {
                data = FileHandle.standardInput.readData(ofLength: 4096)
            } else {
                guard let h = FileHandle(forReadingAtPath: path) else { throw ValidationError("cannot read \(option) \(path)") }
                data = h.readData(ofLength: 4096)
            }
            return (String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first ?? "").trimmingCharacters(in: .whitespaces)
        }
    }

    static func show(_ k: KeyringView) {
        print("primary: \(k.primary)")
        for key in k.keys { print("key:     \(key)") }
    }

    /// One line per key (members holding it, members sealing with it), then who failed or was silent.
    static func show(_ r: KeyringRollout) throws {
        if r.op == "list" {
            print(Table.render([["KEY", "MEMBERS", "PRIMARY ON"]] + r.keys.map { [$0.key, "\($0.nodes)/\(r.ok.count)", "\($0.primary)"] }), terminator: "")
        }
        print("\(r.op): \(r.ok.count) of \(r.nodes) members answered ok")
        for (name, why) in r.failed.sorted(by: { $0.key < $1.key }) { print("\(name): \(why)") }
        if !r.noReply.isEmpty {
            let hint = r.op == "list" ? "" : " (it may still apply the change later; retry, or run it there with --local)"
            print("no answer from \(r.noReply.joined(separator: ", "))\(hint)")
        }
        if r.ok.count != r.nodes { throw ExitCode(1) }
    }

    static func change(_ op: String, _ key: String, _ options: Options) throws {
        let client = try AdminClient(dataDir: options.dataDir)
        if options.local {
            show(try client.post("/v1/keyring/\(op)", json: ["key": key], as: KeyringView.self))
        } else {
            try show(try client.post("/v1/cluster/keyring/\(op)", json: ["key": key], as: KeyringRollout.self))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the keys and how many members hold and use each.")
        @OptionGroup var options: Options
        func run() throws {
            let client = try AdminClient(dataDir: options.dataDir)
            if options.local {
                KeyringCommand.show(try client.get("/v1/keyring", as: KeyringView.self))
            } else {
                try KeyringCommand.show(try client.get("/v1/cluster/keyring", as: KeyringRollout.self))
            }
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a key (base64, 32 bytes) used to open packets.")
        @OptionGroup var options: Options
        @OptionGroup var key: KeyInput
        func run() throws { try KeyringCommand.change("install", key.read(), options) }
    }

    struct Use: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an installed key the one packets are sealed with.")
        @OptionGroup var options: Options
        @OptionGroup var key: KeyInput
        func run() throws { try KeyringCommand.change("use", key.read(), options) }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key that no member seals with.")
        @OptionGroup var options: Options
        @OptionGroup var key: KeyInput
        func run() throws { try KeyringCommand.change("remove", key.read(), options) }
    }
}

struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join", abstract: "Enrol a new node with a join token; or, without --token, make the running node join members' gossip addresses.",
        discussion: """
            With --token: `stacks join SEED --token TOKEN --data-dir DIR` proves the token to the member at SEED (its \
            `address` in `stacks status`), after checking that it holds the token's cluster key, and keeps the node's \
            credential, the cluster's keyring and a config in DIR; `stacks agent --data-dir DIR` then runs the node.
            """)
    @Option(name: .long, help: "Data directory of the node.")
    var dataDir = ".stacks"
    @Option(name: .long, help: "A join token from `stacks token create`. Prefer --token-file or STACKS_TOKEN (a command line is visible in `ps`).")
    var token: String?
    @Option(name: .long, help: "Read the join token from this file (its first line), or from standard input with -.")
    var tokenFile: String?

    /// The token from --token, else --token-file, else the environment's STACKS_TOKEN (as k3s
    /// takes --token-file and K3S_TOKEN), so it need not appear on a command line.
    static func readToken(_ token: String?, file: String?) throws -> String? {
        if token != nil && file != nil { throw ValidationError("give --token or --token-file, not both") }
        if let token { return token }
        if let file { return try KeyringCommand.KeyInput.firstLine(of: file, option: "--token-file") }
        return ProcessInfo.processInfo.environment["STACKS_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether a token is given one of those ways (without reading it: standard input is read once).
    static func tokenGiven(_ token: String?, file: String?) -> Bool {
        token != nil || file != nil || ProcessInfo.processInfo.environment["STACKS_TOKEN"].map { !$0.isEmpty } == true
    }
    @Option(name: .long, help: "With --token: the new node's name (default: the host name).")
    var name: String?
    @Option(name: .long, help: "With --token: the S3 listen address host:port.")
    var s3Listen = "127.0.0.1:9000"
    @Option(name: .long, help: "With --token: the gossip UDP address host:port.")
    var gossipListen = "127.0.0.1:7946"
    @Option(name: .long, help: "With --token: the admin API address host:port (loopback).")
    var adminListen = "127.0.0.1:9001"
    @Option(name: .long, help: "With --token: the Raft TCP address host:port.")
    var raftListen = "127.0.0.1:7100"
    @Option(name: .long, help: "With --token: the metrics address host:port.")
    var metricsListen = "127.0.0.1:9002"
    @Option(name: .long, help: "With --token: the data connection's TCP address host:port.")
    var dataListen = "127.0.0.1:7300"
    @Argument(help: "With --token: one member's address (`stacks status`). Without: gossip addresses of members.")
    var seeds: [String]

    var nodeName: String {
        name ?? String(ProcessInfo.processInfo.hostName.prefix { $0 != "." }.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" })
    }

    func validate() throws {
        guard Self.tokenGiven(token, file: tokenFile) else { return }
        guard seeds.count == 1 else { throw ValidationError("give exactly one seed: a member's address from `stacks status`") }
        guard NodeConfig.isValidName(nodeName) else { throw ValidationError("--name must be 1-64 letters, digits, '-', '_' or '.'") }
        guard
            NodeConfig.development(
                dataDir: dataDir, s3Listen: s3Listen, gossipListen: gossipListen, adminListen: adminListen, raftListen: raftListen,
                metricsListen: metricsListen, dataListen: dataListen) != nil
        else { throw ValidationError("the --*-listen options must be host:port, and --admin-listen a loopback address") }
    }

    func run() async throws {
        guard let token = try Self.readToken(token, file: tokenFile) else {
            _ = try AdminClient(dataDir: dataDir).post("/v1/join", json: ["seeds": seeds], as: [String: [String]].self)
            print("joining through \(seeds.joined(separator: ", "))")
            return
        }
        let grant: JoinGrant
        do { grant = try await Enrolment.enrol(seed: seeds[0], token: token, name: nodeName, dataDir: dataDir) } catch let e as Enrolment.Failure {
            FileHandle.standardError.write(Data("stacks: \(e)\n".utf8))
            throw ExitCode(1)
        }
        let config = """
            # Written by `stacks join`; `stacks agent --data-dir \(dataDir)` runs this node.
            [node]
            name = "\(nodeName)"
            data_dir = "\(dataDir)"

            [s3]
            listen = "\(s3Listen)"

            [gossip]
            listen = "\(gossipListen)"

            [admin]
            listen = "\(adminListen)"

            [metrics]
            listen = "\(metricsListen)"

            [raft]
            listen = "\(raftListen)"

            [data]
            listen = "\(dataListen)"

            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: "\(dataDir)/node.toml"))
        print("joined cluster \(grant.clusterID) as \(nodeName) (role \(grant.credential.role.rawValue)); run it with: stacks agent --data-dir \(dataDir)")
    }
}

struct TagsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags", abstract: "Replace this node's gossiped tags (until restart; put lasting ones in the config).")
    @Option(name: .long, help: "Data directory of the local node.")
    var dataDir = ".stacks"
    @Argument(help: "key=value pairs; none clears the tags.")
    var pairs: [String] = []
    func validate() throws {
        for p in pairs where !p.contains("=") || p.hasPrefix("=") { throw ValidationError("tags are key=value, got \(p)") }
    }
    func run() throws {
        var tags: [String: String] = [:]
        for p in pairs { let kv = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false); tags[String(kv[0])] = String(kv[1]) }
        let set = try AdminClient(dataDir: dataDir).post("/v1/tags", json: ["tags": tags], as: [String: String].self)
        print(set.keys.sorted().map { "\($0)=\(set[$0]!)" }.joined(separator: " "))
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Print a new random gossip key (base64).")
    func run() { print(Keyring.generateKey()) }
}
