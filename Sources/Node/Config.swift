import Determinism
import Membership
import S3
import Security

/// A configuration problem, naming the file, the key and (when known) the line.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String?
    public var line: Int?
    public var problem: String

    public var description: String {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let key { return "\(where_): \(key) \(problem)" }
        return "\(where_): \(problem)"
    }
}

/// One node's validated configuration.
public struct NodeConfig: Sendable, Equatable {
    public var name: String
    public var dataDir: String
    public var s3Listen: ListenAddress
    public var region: String
    public var baseDomain: String?
    public var gossipListen: ListenAddress
    /// Gossip addresses of members to join through.
    public var seeds: [String]
    /// Initial gossip key (base64); the keyring file in the data dir wins once it exists.
    public var gossipKey: String?

    public var adminListen: ListenAddress
    /// Prometheus scrape endpoint (`GET /metrics`, no token: it tells counts, not data).
    public var metricsListen: ListenAddress
    /// Node metadata gossiped to every member (zone, roles, capacity, hypervisor…).
    public var tags: [String: String]
    /// Raft transport (TCP) address; peers learn it through gossip.
    public var raftListen: ListenAddress
    /// The data connection's TCP address (shards between nodes).
    public var dataListen: ListenAddress
    /// Start a new cluster when this node has no Raft state yet. nil: only when it has no seeds
    /// (the first node); nodes with seeds wait to be added by the leader.
    public var bootstrap: Bool?
    /// Voters the leader keeps when the cluster has that many nodes (an odd number, 1–7).
    public var voters: Int
    /// Seconds a voter must be dead (or left) in gossip before a learner replaces it.
    public var deadVoterAfter: Span
    /// Seconds a node must be dead (or left) in gossip before it leaves the layout and its
    /// shards are rebuilt elsewhere (`data.remove_after`; Ceph's mon_osd_down_out_interval is 600).
    public var removeAfter: Span
    /// Pause between the repairer's passes over this node's keys, and the scrub's read rate.
    public var repairInterval: Span
    public var scrubBytesPerSecond: Int
    /// How long a delete marker stays before the repairer drops it and every version under it
    /// (`data.marker_grace`).
    public var markerGrace: Span
    /// S3 connection bounds (`s3.max_connections`, `s3.idle_timeout`).
    public var s3Limits = S3Limits()
    /// Applied entries between snapshots of the cluster state (etcd's --snapshot-count).
    public var snapshotEvery: Int
    /// Enrol through this member's data address with this token on the first start
    /// (`join.seed`, `join.token`; what `stacks agent --join SEED --token TOKEN` gives).
    public var joinSeed: String?
    public var joinToken: String?

    /// 1-64 letters, digits, '-', '_' or '.'.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
    }

    /// The embedded default: one node, data under `./.stacks/`, S3 on loopback.
    /// nil when an address is not host:port or the admin address is not loopback (serving the
    /// admin API elsewhere takes a config file with `admin.allow_remote`).
    public static func development(
        dataDir: String = ".stacks", s3Listen: String = "127.0.0.1:9000",
        gossipListen: String = "127.0.0.1:7946", adminListen: String = "127.0.0.1:9001",
        raftListen: String = "127.0.0.1:7100", metricsListen: String = "127.0.0.1:9002", dataListen: String = "127.0.0.1:7300"
    ) -> NodeConfig? {
        guard let s3 = ListenAddress(s3Listen), let g = ListenAddress(gossipListen), let a = ListenAddress(adminListen),
            let r = ListenAddress(raftListen), let m = ListenAddress(metricsListen), let d = ListenAddress(dataListen), a.isLoopback
        else { return nil }
        var c = NodeConfig(
            name: "dev", dataDir: dataDir, s3Listen: s3, region: "us-east-1", baseDomain: nil,
            gossipListen: g, seeds: [], gossipKey: nil, adminListen: a, metricsListen: m, tags: [:], raftListen: r)
        c.dataListen = d
        return c
    }

    /// Every key the config may hold, with its meaning (shown in errors for unknown keys).
    static let keys: [String: String] = [
        "node.name": "this node's name (string)",
        "node.data_dir": "directory for this node's data (string, required)",
        "s3.listen": "S3 endpoint address host:port (string)",
        "s3.region": "region clients sign for (string)",
        "s3.base_domain": "domain for virtual-host style bucket addressing (string)",
        "s3.max_connections": "connections served at once; more are answered 503 SlowDown (integer, default 1024)",
        "s3.idle_timeout": "seconds a connection may send nothing before it is closed (integer, default 60)",
        "gossip.listen": "gossip UDP address host:port (string)",
        "gossip.seeds": "gossip addresses of members to join through (array of strings)",
        "gossip.key": "initial gossip encryption key, base64 of 32 bytes (string; `stacks keygen` makes one)",
        "admin.listen": "loopback admin API address host:port (string)",
        "admin.allow_remote": "let admin.listen be a non-loopback address; the API is plain HTTP with a bearer token (boolean, default false)",
        "metrics.listen": "Prometheus scrape address host:port, GET /metrics without a token (string, default 127.0.0.1:9002)",
        "raft.listen": "Raft transport TCP address host:port (string)",
        "data.listen": "TCP address host:port of the data connection between nodes, shard reads and writes (string, default 127.0.0.1:7300)",
        "raft.bootstrap": "start a new cluster if this node has no Raft state (boolean; default: true only without seeds)",
        "raft.voters": "voters to keep when the cluster is big enough: 1, 3, 5 or 7 (integer, default 5)",
        "raft.dead_voter_after": "seconds a voter stays dead in gossip before it is replaced (integer, default 10)",
        "raft.snapshot_every": "applied changes between snapshots of the cluster state (integer, default 100000)",
        "data.repair_interval": "seconds between passes of the scrubber and repairer over this node's shards (integer, default 60)",
        "data.scrub_rate": "MiB per second the scrubber reads at most (integer, default 64)",
        "data.marker_grace": "seconds a deleted key's marker stays before the repairer drops it from every node (integer, default 3600)",
        "data.remove_after": "seconds a node stays dead in gossip before it leaves the layout and its data is rebuilt elsewhere (integer, default 600)",
        "join.seed": "on the first start, enrol through this member's address host:port (`stacks status` shows it) (string; needs join.token)",
        "join.token": "the join token for join.seed, as `stacks token create` prints it (string)",
        "tags.*": "node metadata gossiped to all members, e.g. tags.zone = \"a\" (strings)",
    ]

    /// Parses and validates a TOML config; every error names the key and the file.
    public init(toml text: String, file: String) throws(ConfigError) {
        let doc = try TOMLDocument(parsing: text, file: file)
        for (key, entry) in doc.values where Self.keys[key] == nil && !key.hasPrefix("tags.") {
            throw ConfigError(
                file: file, key: key, line: entry.line,
                problem: "is not a known setting (known: \(Self.keys.keys.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) throws(ConfigError) -> String? {
            guard let e = doc.values[key] else { return nil }
            guard case .string(let s) = e.value else {
                throw ConfigError(file: file, key: key, line: e.line, problem: "must be a string, got \(e.value)")
            }
            return s
        }
        func line(_ key: String) -> Int? { doc.values[key]?.line }

        guard let dataDir = try string("node.data_dir"), !dataDir.isEmpty else {
            throw ConfigError(file: file, key: "node.data_dir", line: nil, problem: "is required")
        }
        self.dataDir = dataDir
        name = try string("node.name") ?? "node"
        guard Self.isValidName(name) else {
            throw ConfigError(file: file, key: "node.name", line: line("node.name"), problem: "must be 1-64 letters, digits, '-', '_' or '.'")
        }
        let listen = try string("s3.listen") ?? "127.0.0.1:9000"
        guard let addr = ListenAddress(listen) else {
            throw ConfigError(file: file, key: "s3.listen", line: line("s3.listen"), problem: "must be host:port, got \(listen.debugDescription)")
        }
        s3Listen = addr
        region = try string("s3.region") ?? "us-east-1"
        guard !region.isEmpty, region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw ConfigError(file: file, key: "s3.region", line: line("s3.region"), problem: "must be letters, digits and '-'")
        }
        func address(_ key: String, _ fallback: String) throws(ConfigError) -> ListenAddress {
            let v = try string(key) ?? fallback
            guard let a = ListenAddress(v) else {
                throw ConfigError(file: file, key: key, line: line(key), problem: "must be host:port, got \(v.debugDescription)")
            }
            return a
        }
        gossipListen = try address("gossip.listen", "127.0.0.1:7946")
        adminListen = try address("admin.listen", "127.0.0.1:9001")
        metricsListen = try address("metrics.listen", "127.0.0.1:9002")
        var allowRemote = false
        if let e = doc.values["admin.allow_remote"] {
            guard case .boolean(let b) = e.value else {
                throw ConfigError(file: file, key: "admin.allow_remote", line: e.line, problem: "must be true or false, got \(e.value)")
            }
            allowRemote = b
        }
        guard allowRemote || adminListen.isLoopback else {
            throw ConfigError(
                file: file, key: "admin.listen", line: line("admin.listen"),
                problem:
                    "is \(adminListen), not a loopback address: the admin API is plain HTTP with a bearer token; set admin.allow_remote = true to serve it there anyway"
            )
        }
        seeds = []
        if let e = doc.values["gossip.seeds"] {
            guard case .array(let items) = e.value else {
                throw ConfigError(file: file, key: "gossip.seeds", line: e.line, problem: "must be an array of \"host:port\" strings")
            }
            for item in items {
                guard case .string(let s) = item, ListenAddress(s) != nil else {
                    throw ConfigError(file: file, key: "gossip.seeds", line: e.line, problem: "must be an array of \"host:port\" strings, got \(item)")
                }
                seeds.append(s)
            }
        }
        gossipKey = try string("gossip.key")
        if let k = gossipKey, (Base64.decode(k)?.count ?? 0) != 32 {
            throw ConfigError(file: file, key: "gossip.key", line: line("gossip.key"), problem: "must be base64 of 32 bytes (`stacks keygen` makes one)")
        }
        tags = [:]
        for (key, _) in doc.values where key.hasPrefix("tags.") {
            let name = String(key.dropFirst(5))
            guard let v = try string(key), !name.contains("."), name.utf8.count <= 255, v.utf8.count <= 255 else {
                throw ConfigError(file: file, key: key, line: line(key), problem: "must be a string of at most 255 bytes")
            }
            tags[name] = v
        }
        if tags.count > GossipService.maxUserTags {
            throw ConfigError(file: file, key: "tags", line: nil, problem: "has \(tags.count) tags; peers accept at most \(GossipService.maxUserTags)")
        }
        raftListen = try address("raft.listen", "127.0.0.1:7100")
        dataListen = try address("data.listen", "127.0.0.1:7300")
        func integer(_ key: String, _ fallback: Int, _ allowed: String, _ ok: (Int) -> Bool) throws(ConfigError) -> Int {
            guard let e = doc.values[key] else { return fallback }
            guard case .integer(let i) = e.value, ok(i) else {
                throw ConfigError(file: file, key: key, line: e.line, problem: "must be an integer \(allowed), got \(e.value)")
            }
            return i
        }
        voters = try integer("raft.voters", 5, "1, 3, 5 or 7") { [1, 3, 5, 7].contains($0) }
        deadVoterAfter = .seconds(Double(try integer("raft.dead_voter_after", 10, "from 1 to 86400") { (1...86_400).contains($0) }))
        removeAfter = .seconds(Double(try integer("data.remove_after", 600, "from 1 to 2592000") { (1...2_592_000).contains($0) }))
        repairInterval = .seconds(Double(try integer("data.repair_interval", 60, "from 1 to 604800") { (1...604_800).contains($0) }))
        scrubBytesPerSecond = try integer("data.scrub_rate", 64, "from 1 to 100000") { (1...100_000).contains($0) } << 20
        markerGrace = .seconds(Double(try integer("data.marker_grace", 3600, "from 1 to 2592000") { (1...2_592_000).contains($0) }))
        snapshotEvery = try integer("raft.snapshot_every", 100_000, "from 100 to 10000000") { (100...10_000_000).contains($0) }
        s3Limits = S3Limits(
            maxConnections: try integer("s3.max_connections", 1024, "from 1 to 1000000") { (1...1_000_000).contains($0) },
            idleTimeout: .seconds(Double(try integer("s3.idle_timeout", 60, "from 1 to 86400") { (1...86_400).contains($0) })))
        if let e = doc.values["raft.bootstrap"] {
            guard case .boolean(let b) = e.value else {
                throw ConfigError(file: file, key: "raft.bootstrap", line: e.line, problem: "must be true or false, got \(e.value)")
            }
            bootstrap = b
        }
        joinSeed = try string("join.seed")
        joinToken = try string("join.token")
        if (joinSeed == nil) != (joinToken == nil) {
            throw ConfigError(
                file: file, key: joinSeed == nil ? "join.seed" : "join.token", line: nil,
                problem: "is required with \(joinSeed == nil ? "join.token" : "join.seed")")
        }
        if let s = joinSeed, ListenAddress(s) == nil {
            throw ConfigError(file: file, key: "join.seed", line: line("join.seed"), problem: "must be host:port, got \(s)")
        }
        if let t = joinToken, JoinToken(text: t) == nil {
            throw ConfigError(
                file: file, key: "join.token", line: line("join.token"), problem: "is not a join token (STKS1-…, as `stacks token create` prints it)")
        }
        baseDomain = try string("s3.base_domain")
        if let d = baseDomain, d.isEmpty || d.hasPrefix(".") {
            throw ConfigError(file: file, key: "s3.base_domain", line: line("s3.base_domain"), problem: "must be a domain like s3.example.com")
        }
    }

    init(
        name: String, dataDir: String, s3Listen: ListenAddress, region: String, baseDomain: String?,
        gossipListen: ListenAddress, seeds: [String], gossipKey: String?, adminListen: ListenAddress, metricsListen: ListenAddress,
        tags: [String: String], raftListen: ListenAddress
    ) {
        self.name = name; self.dataDir = dataDir; self.s3Listen = s3Listen; self.region = region; self.baseDomain = baseDomain
        self.gossipListen = gossipListen; self.seeds = seeds; self.gossipKey = gossipKey; self.adminListen = adminListen; self.tags = tags
        self.metricsListen = metricsListen
        self.raftListen = raftListen; dataListen = ListenAddress("127.0.0.1:7300")!; voters = 5; deadVoterAfter = .seconds(10); removeAfter = .seconds(600);
        snapshotEvery = 100_000
        repairInterval = .seconds(60); scrubBytesPerSecond = 64 << 20; markerGrace = .seconds(3600)
    }
}
