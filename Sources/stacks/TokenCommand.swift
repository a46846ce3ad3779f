import ArgumentParser
import Foundation
import Node

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Make, list and revoke join tokens (what a new node needs to join).",
        discussion: """
            A token carries the cluster key's fingerprint, so the joining node refuses a seed that is not a member, and \
            a secret the cluster keeps only a hash of. Give it to `stacks join SEED --token TOKEN --data-dir DIR` or \
            `stacks agent --join SEED --token TOKEN`, where SEED is a member's `address` from `stacks status`.
            """,
        subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

    struct Options: ParsableArguments {
        @Option(name: .long, help: "Data directory of the local node.")
        var dataDir = ".stacks"
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a token; it is printed once, on the last line.")
        @OptionGroup var options: Options
        @Option(name: .long, help: "How long it is valid: like 30m, 1h, 7d (default 1h, at most 366d).")
        var ttl = "1h"
        @Option(name: .long, help: "How many nodes may join with it (default 1).")
        var uses = 1
        @Option(name: .long, help: "storage, compute or all (default all).")
        var role = "all"

        func validate() throws {
            guard TokenCommand.seconds(ttl) != nil else { throw ValidationError("--ttl must be like 30m, 1h or 7d, got \(ttl)") }
            guard uses >= 1 else { throw ValidationError("--uses must be at least 1") }
            guard ["storage", "compute", "all"].contains(role) else { throw ValidationError("--role must be storage, compute or all") }
        }

        func run() throws {
            struct Body: Encodable {
                var ttl_seconds: Int
                var uses: Int
                var role: String
            }
            let t = try AdminClient(dataDir: options.dataDir).post(
                "/v1/tokens", json: Body(ttl_seconds: TokenCommand.seconds(ttl)!, uses: uses, role: role), as: NewToken.self)
            print("token \(t.id): role \(t.role), \(t.uses) use\(t.uses == 1 ? "" : "s"), expires \(TokenCommand.date(t.expiresMs))")
            print(t.token)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets), or with --joins the nodes that joined.")
        @OptionGroup var options: Options
        @Flag(name: .long, help: "Show the audit trail of joins instead: which node, when, with which token.")
        var joins = false
        @Option(name: .long, help: "table or json.")
        var format = "table"
        func validate() throws {
            guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        }

        func run() throws {
            let client = try AdminClient(dataDir: options.dataDir)
            if joins {
                let js = try client.get("/v1/joins", as: [JoinView].self)
                if format == "json" { return try TokenCommand.printJSON(js) }
                print(
                    Table.render([["NODE", "ROLE", "TOKEN", "JOINED"]] + js.map { [$0.node, $0.role, $0.token, TokenCommand.date($0.atMs)] }), terminator: "")
                return
            }
            let ts = try client.get("/v1/tokens", as: [TokenView].self)
            if format == "json" { return try TokenCommand.printJSON(ts) }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let rows = ts.map { t in
                [
                    t.id, t.role, TokenCommand.date(t.expiresMs), "\(t.usesLeft)",
                    t.revoked ? "revoked" : t.expiresMs <= now ? "expired" : t.usesLeft == 0 ? "used up" : "valid",
                ]
            }
            print(Table.render([["ID", "ROLE", "EXPIRES", "USES LEFT", "STATE"]] + rows), terminator: "")
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token: no node joins with it any more.")
        @OptionGroup var options: Options
        @Argument(help: "The token's id (from `stacks token list`).")
        var id: String
        func run() throws {
            let (status, body) = try AdminClient(dataDir: options.dataDir).request("DELETE", "/v1/tokens/\(id)")
            guard status == 200 else {
                let message = (try? JSONDecoder().decode([String: String].self, from: body))?["error"] ?? "status \(status)"
                throw CLIError(message)
            }
            print("revoked token \(id)")
        }
    }

    /// "90s", "30m", "1h", "7d" (or plain seconds).
    static func seconds(_ s: String) -> Int? {
        let units: [(String, Int)] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        var number = Substring(s), scale = 1
        if let (u, f) = units.first(where: { s.hasSuffix($0.0) }) { number = s.dropLast(u.count); scale = f }
        guard let v = Int(number), v >= 1, v <= 366 * 86_400 / scale else { return nil }
        return v * scale
    }

    static func date(_ ms: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    static func printJSON(_ v: some Encodable) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(v), as: UTF8.self))
    }
}

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Manage the cluster's admitted nodes.", subcommands: [Remove.self])

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a node for good: its credential is refused by every member, and the gossip and secrets keys are rotated without it.",
            discussion: """
                Its data is rebuilt elsewhere as for any node that left. Run it on another member. The removed node \
                knew every S3 user's secret (SigV4 is a shared secret, so every node that serves S3 holds them): \
                --rotate-keys gives every user a new secret, printed here once, and keeps the old ones valid for \
                --grace so clients can move over. It is not the default because every client must be given its new \
                secret. Running it again finishes a removal that was cut short.
                """)
        @OptionGroup var options: TokenCommand.Options
        @Argument(help: "The node's name.")
        var name: String
        @Flag(help: "Give every S3 user a new secret (printed once).") var rotateKeys = false
        @Option(help: "With --rotate-keys: how long the old secrets stay valid (like 0s, 30m, 1h, 7d; at most 30d).") var grace = "1h"

        var graceSeconds: Int? { ["0", "0s"].contains(grace) ? 0 : TokenCommand.seconds(grace) }

        func validate() throws {
            guard let s = graceSeconds, s <= 30 * 86400 else { throw ValidationError("--grace must be like 0s, 30m, 1h or 7d (at most 30d), got \(grace)") }
        }

        func run() throws {
            struct Body: Encodable {
                var rotate_keys: Bool
                var grace_seconds: Int
            }
            let answer = try AdminClient(dataDir: options.dataDir).post(
                "/v1/nodes/\(name)/remove", json: Body(rotate_keys: rotateKeys, grace_seconds: graceSeconds!), as: NodeRemoval.self)
            print(
                answer.already
                    ? "node \(name) was already removed; the gossip key was rotated again without it"
                    : "removed node \(name); the gossip key was rotated without it")
            if answer.rotatedSecrets { print("the secrets key was rotated without it") }
            guard let keys = answer.keys else { return }
            print("new S3 secrets (shown once; the old ones stay valid for \(grace)):")
            print("ID                    NAME                  SECRET")
            for k in keys {
                print("\(k.id.padding(toLength: 21, withPad: " ", startingAt: 0)) \(k.name.padding(toLength: 21, withPad: " ", startingAt: 0)) \(k.secret)")
            }
        }
    }
}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "S3 users: make, list and delete access keys.",
        discussion: """
            A key without --bucket belongs to a user who creates and owns buckets, and sees no one else's; with \
            --bucket B it may only do what --allow says on B. The secret is shown once.
            """,
        subcommands: [Create.self, List.self, Delete.self], defaultSubcommand: List.self)

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; prints AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines.")
        @OptionGroup var options: TokenCommand.Options
        @Option(name: .long, help: "The user's name (shown as the owner in listings).")
        var name: String
        @Option(name: .long, help: "Limit the key to this bucket.")
        var bucket: String?
        @Option(name: .long, help: "With --bucket: read, write or read,write (default read,write).")
        var allow: String?
        func validate() throws {
            if allow != nil && bucket == nil { throw ValidationError("--allow goes with --bucket") }
        }
        func run() throws {
            struct Body: Encodable {
                var name: String
                var bucket: String?
                var allow: String?
            }
            let k = try AdminClient(dataDir: options.dataDir).post("/v1/keys", json: Body(name: name, bucket: bucket, allow: allow), as: [String: String].self)
            print("AWS_ACCESS_KEY_ID=\(k["id"] ?? "")")
            print("AWS_SECRET_ACCESS_KEY=\(k["secret"] ?? "")")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @OptionGroup var options: TokenCommand.Options
        @Option(name: .long, help: "table or json.")
        var format = "table"
        func run() throws {
            let ks = try AdminClient(dataDir: options.dataDir).get("/v1/keys", as: [UserView].self)
            if format == "json" { return try TokenCommand.printJSON(ks) }
            let rows = ks.map { [$0.id, $0.name, $0.admin ? "admin" : $0.bucket ?? "own buckets", $0.allow, TokenCommand.date($0.createdMs)] }
            print(Table.render([["ID", "NAME", "SCOPE", "ALLOW", "CREATED"]] + rows), terminator: "")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a key: requests signed with it are refused from then on.")
        @OptionGroup var options: TokenCommand.Options
        @Argument(help: "The access key id.")
        var id: String
        func run() throws {
            let (status, body) = try AdminClient(dataDir: options.dataDir).request("DELETE", "/v1/keys/\(id)")
            guard status == 200 else {
                throw CLIError((try? JSONDecoder().decode([String: String].self, from: body))?["error"] ?? "status \(status)")
            }
            print("deleted key \(id)")
        }
    }
}
