import Cluster
import Control
import DataPlane
import DataRPC
import Files
import Foundation
import Hummingbird
import Logging
import Membership
import NIOCore
import Objects
import S3
import Security
import ShardStore
import Synchronization
import Telemetry

/// One running node: the object store and the S3 endpoint, composed from the config.
public struct Agent: Sendable {
    public let config: NodeConfig
    public let logger: Logger

    public init(config: NodeConfig) {
        self.config = config
        var logger = Logger(label: "stacks")
        logger[metadataKey: "node"] = "\(config.name)"
        logger.logLevel = ProcessInfo.processInfo.environment["STACKS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        self.logger = logger
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Runs until SIGINT or SIGTERM. `announce` is called once the S3 endpoint accepts connections.
    /// `join` adds gossip seeds to the config's.
    /// `enrol`: a member's data address and a join token, used on the first start (as `join.seed`
    /// and `join.token` in the config).
    public func run(
        join: [String] = [], enrol: (seed: String, token: String)? = nil, generateGossipKey: Bool = false,
        announce: @escaping @Sendable (_ endpoint: String, _ newKey: (id: String, secret: String)?) -> Void
    ) async throws {
        try Files.makeDirectory(config.dataDir)
        try Files.writeAtomically(Array("\(getpid())\n".utf8), to: "\(config.dataDir)/pid")
        let store = try ObjectStore(root: "\(config.dataDir)/store", clock: Self.nowMs)
        for q in store.quarantined { logger.warning("object record quarantined at \(q.path): \(q.reason)") }
        let config = self.config, logger = self.logger
        let envPath = "\(config.dataDir)/env", adminPath = "\(config.dataDir)/admin"
        try? Files.remove(envPath)  // the env file appears only once this run's endpoint answers

        // Identity: enrol with a join token on the first start, if given one.
        var identity = try NodeIdentity(dataDir: config.dataDir)
        if identity.credential == nil, let (seed, token) = enrol ?? config.joinSeed.map({ ($0, config.joinToken ?? "") }) {
            logger.info("enrolling through \(seed)")
            let grant = try await Enrolment.enrol(seed: seed, token: token, name: config.name, dataDir: config.dataDir)
            logger.info("enrolled", metadata: ["cluster": "\(grant.clusterID)", "role": "\(grant.credential.role)"])
            identity = try NodeIdentity(dataDir: config.dataDir)
        }
        var seeds = config.seeds + join
        for s in Enrolment.savedSeeds(dataDir: config.dataDir) where !seeds.contains(s) { seeds.append(s) }

        let keyringPath = "\(config.dataDir)/keyring"
        let keyring: Keyring
        if let k = try Keyring.load(path: keyringPath) {
            keyring = k
        } else {
            // The founding node makes the gossip key; joining nodes receive the keyring with their credential.
            guard let initial = config.gossipKey ?? (generateGossipKey || (config.bootstrap ?? seeds.isEmpty) ? Keyring.generateKey() : nil) else {
                throw ConfigError(
                    file: "config", key: "join.token", line: nil,
                    problem: "is required on a joining node's first start (`stacks token create` on a member makes one), or gossip.key shared by every node")
            }
            keyring = try Keyring(primary: Keyring.parse(base64: initial))
            try keyring.save(path: keyringPath)
        }
        let exporter = MetricsExporter()
        let gossip = GossipService(
            name: config.name, listen: config.gossipListen, tags: config.tags,
            reservedTags: [RaftService.addressTag: config.raftListen.description, ClusterData.addressTag: config.dataListen.description],
            seeds: seeds, keyring: keyring, keyringPath: keyringPath,
            peersPath: "\(config.dataDir)/gossip-peers",
            seed: UInt64.random(in: .min ... .max), logger: logger, metrics: exporter.metrics)
        var raftSettings = RaftServiceSettings()
        raftSettings.voters = config.voters
        raftSettings.deadVoterAfter = config.deadVoterAfter
        raftSettings.removeAfter = config.removeAfter
        raftSettings.compactEvery = UInt64(config.snapshotEvery)
        let log: @Sendable (String) -> Void = { logger.warning("\($0)") }
        // What `stacks status` and `members --watch` show moves with these (long polls wait on it).
        let changes = ChangeFeed()
        let clusterGossipKey = NewestGossipKey()
        // Set once the env file is first written: writes it again after a secrets rotation.
        let rewriteEnv = Hook()
        let raft = try RaftService(
            name: config.name, directory: "\(config.dataDir)/raft", listen: config.raftListen,
            bootstrap: config.bootstrap ?? seeds.isEmpty, gossip: gossip, keyring: keyring,
            settings: raftSettings, logger: logger, metrics: exporter.metrics,
            onApply: { c, o in
                ClusterCatalog.mirror(c, o, store: store, logger: log)
                if case .applyLayout = c, o == .ok { changes.bump() }
                if o == .ok, let (primary, ring, grace) = Self.gossipRing(after: c) {
                    Self.adoptGossipRing(primary, ring, grace: grace, into: clusterGossipKey, gossip: gossip, logger: logger)
                }
                if case .rotateSecrets = c, o == .ok { rewriteEnv.run() }
            },
            onRestore: { s in
                ClusterCatalog.reconcile(s, store: store, logger: log)
                if let k = s.gossipKey {
                    Self.adoptGossipRing(
                        k, s.gossipKeys.isEmpty ? [k] : s.gossipKeys, grace: Self.gossipKeyGrace, into: clusterGossipKey, gossip: gossip, logger: logger)
                }
            })
        raft.onShapeChange = { changes.bump() }
        // The founding node makes the cluster's signing key (also a node upgraded from before
        // join tokens that founded its cluster alone); its own credential follows once the
        // cluster id is committed. A cluster founded on a shared `gossip.key` keeps running as
        // before join tokens: its nodes seal Raft and data frames under that key.
        let mayFound = raft.founded || (seeds.isEmpty && raft.read { $0.nodes.isEmpty && $0.layout.members.count <= 1 })
        if identity.clusterKey == nil && identity.credential == nil && config.gossipKey == nil && mayFound {
            try identity.save(clusterKey: .generate())
            if identity.nodeKey == nil { try identity.save(nodeKey: .generate()) }
            try identity.save(secretsKey: Sodium.randomBytes(Sodium.AEAD.keyBytes))
            logger.info("made the cluster's signing key", metadata: ["fingerprint": "\(identity.clusterKey!.fingerprint.hex)"])
        }
        // A cluster with node credentials changes keyrings through its log only.
        if identity.clusterKey != nil { gossip.takeKeyringFromLog() }
        // Raft and data connections prove this identity and check their peers' against the cluster state.
        let authority = NodeAuthority(identity)
        authority.raft.withLock { $0 = raft }
        raft.authority = authority
        let joins = JoinService(raft: raft, gossip: gossip, authority: authority, metrics: exporter.metrics, logger: logger)
        let startIdentity = identity
        if identity.signs {
            gossip.setReservedTag(JoinService.signerTag, "1")
        }
        let memberEvents = gossip.events
        Task { for await _ in memberEvents { changes.bump() } }
        let catalog = ClusterCatalog(raft: raft, store: store, clock: Self.nowMs, authority: authority)
        // A founding node brings along what it held alone: its buckets and the access keys of
        // its credentials file, making one key if it has none.
        let keys = try AccessKeys(dataDir: config.dataDir)
        let newKey = raft.founded && keys.all.isEmpty ? try keys.create() : nil
        let migrateBuckets: [Command] = raft.founded ? store.listBuckets().map { .createBucket(name: $0.name, createdMs: $0.createdMs) } : []
        // Objects across the cluster: this node's shards, its data server, and the plane that
        // spreads what this node's S3 endpoint takes once the layout has more than one node.
        let shards = try ShardStore(root: "\(config.dataDir)/cluster")
        let clusterData = ClusterData(
            raft: raft, keyring: keyring, name: config.name, address: config.dataListen.description, path: "\(config.dataDir)/data-peers")
        Task { await clusterData.follow(gossip) }
        let dataServer = DataServer(
            host: config.dataListen.host, port: config.dataListen.port, backend: shards, sealer: clusterData, door: joins, authority: authority,
            isMember: { clusterData.isMemberHost($0) }, logger: logger)
        let dataRefusals = exporter.metrics.counter(
            Series(
                "stacks_data_handshakes_refused_total", "Data connections refused because the peer did not prove a credential of this cluster (or is removed).")
        )
        let wrongPeers = exporter.metrics.counter(
            Series("stacks_data_wrong_peer_total", "Data connections this node opened and dropped: the node that answered was not the one asked for."))
        let refusedAtAccept = exporter.metrics.counter(
            Series("stacks_data_connections_refused_total", "Data connections closed as they were accepted (over the total or per-source caps)."))
        let dataClient = DataClient(sealer: clusterData, authority: authority)
        let dataRefusalsCounted = Mutex((0, 0, 0))
        exporter.metrics.beforeScrape {
            let n = (dataServer.handshakesRefused, dataClient.wrongPeers, dataServer.refusedAtAccept)
            dataRefusalsCounted.withLock { c in
                dataRefusals.increment(by: n.0 - c.0)
                wrongPeers.increment(by: n.1 - c.1)
                refusedAtAccept.increment(by: n.2 - c.2)
                c = n
            }
        }
        var planeSettings = PlaneSettings()
        planeSettings.markerGrace = config.markerGrace
        let plane = DataPlane(
            client: dataClient, map: clusterData, settings: planeSettings, wallMs: Self.nowMs, logger: logger)
        let responder = S3Responder(
            store: store, credentials: catalog,
            settings: S3Settings(region: config.region, baseDomain: config.baseDomain), catalog: catalog,
            clock: Self.nowMs, logger: logger, metrics: exporter.metrics, plane: plane)

        let repairer = Repairer(
            name: config.name, shards: shards, plane: plane, interval: .nanoseconds(config.repairInterval.nanoseconds),
            bytesPerSecond: config.scrubBytesPerSecond, publish: { gossip.setReservedTag(DataReport.tag, $0.encoded) }, metrics: exporter.metrics,
            logger: logger)
        Task { await repairer.run() }
        // What a one-node cluster stored moves into the cluster once it has grown.
        Task {
            while !Task.isCancelled {
                if await responder.spreadLocalObjects() == 0 { try? await Task.sleep(for: .seconds(2)) }
            }
        }

        // The admin token survives restarts, so scripts holding it keep working.
        let token = (try? AdminFile.load(path: adminPath).token) ?? Sodium.randomBytes(24).hex
        try? Files.remove(adminPath)
        let admin = Application(
            router: AdminAPI.router(gossip: gossip, raft: raft, changes: changes, token: token, join: joins),
            configuration: .init(address: .hostname(config.adminListen.host, port: config.adminListen.port), serverName: "stacks-admin"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? config.adminListen.port
                do { try AdminFile(url: "http://\(config.adminListen.host):\(port)", token: token).save(path: adminPath) } catch {
                    logger.error("cannot write \(adminPath): \(error)")
                }
            },
            logger: logger
        )
        let (metricsURLs, metricsURLSink) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
        let metricsApp = Application(
            router: MetricsAPI.router(exporter: exporter),
            configuration: .init(address: .hostname(config.metricsListen.host, port: config.metricsListen.port), serverName: "stacks-metrics"),
            onServerRunning: { channel in
                metricsURLSink.yield("http://\(config.metricsListen.host):\(channel.localAddress?.port ?? config.metricsListen.port)/metrics")
                metricsURLSink.finish()
            },
            logger: logger
        )
        let connections = ConnectionCounter(limit: config.s3Limits.maxConnections)
        let app = Application(
            responder: responder,
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: [connections.handler(), ExpectContinueHandler()],
                    idleTimeout: TimeAmount(config.s3Limits.idleTimeout))),
            configuration: .init(address: .hostname(config.s3Listen.host, port: config.s3Listen.port), serverName: "Stacks"),
            services: [gossip, raft, dataServer, admin, metricsApp],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? config.s3Listen.port
                let endpoint = "http://\(config.s3Listen.host):\(port)"
                Task {
                    // Ready only once the founder's credential exists: a token made then is redeemable.
                    if startIdentity.signs && !startIdentity.joined {
                        await Self.completeFounderIdentity(startIdentity, name: config.name, raft: raft, joins: joins, logger: logger)
                    }
                    var migrate = migrateBuckets
                    if !keys.all.isEmpty {
                        // Keys of the credentials file the cluster lacks (also after a crash mid-migration).
                        while (try? await raft.linearizableBarrier()) == nil { try await Task.sleep(for: .milliseconds(200)) }
                        // With a secrets key (a cluster founded with join tokens) they become admin users, sealed.
                        let sealer = catalog.secretsKeys.current()
                        for k in keys.all where raft.read({ $0.accessKeys[k.id] == nil && $0.users[k.id] == nil }) {
                            if let sealer {
                                let u = UserKey(
                                    id: k.id, name: "admin", sealedSecret: try SecretsKeys.seal(k.secret, id: k.id, key: sealer.key), createdMs: Self.nowMs(),
                                    admin: true, keyGeneration: sealer.generation)
                                migrate.append(.putUser(u))
                            } else {
                                migrate.append(.putAccessKey(id: k.id, secret: k.secret))
                            }
                        }
                    }
                    for c in migrate {
                        while (try? await raft.submit(c)) == nil { try await Task.sleep(for: .milliseconds(200)) }
                    }
                    // Ready once the cluster state holds a key: the founder's, or the first one a joiner
                    // learns. Only a node that did not join with a token writes it into its env: an
                    // admin secret on every node would be one more thing a removed node keeps.
                    var key: (id: String, secret: String)?
                    while key == nil {
                        key = keys.all.first { k in catalog.secret(forAccessKey: k.id) == k.secret } ?? catalog.someAdminKey()
                        if key == nil { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    var lastMetricsURL = ""
                    for await url in metricsURLs { lastMetricsURL = url }
                    let (envKeyID, metricsURL) = (key!.id, lastMetricsURL)
                    @Sendable func writeEnv(_ secret: String) {
                        let keyLines = startIdentity.joined ? "" : "AWS_ACCESS_KEY_ID=\(envKeyID)\nAWS_SECRET_ACCESS_KEY=\(secret)\n"
                        let env = """
                            \(keyLines)AWS_DEFAULT_REGION=\(config.region)
                            STACKS_S3_ENDPOINT=\(endpoint)
                            STACKS_METRICS_URL=\(metricsURL)

                            """
                        do { try Files.writeAtomically(Array(env.utf8), to: envPath) } catch {
                            logger.error("cannot write \(envPath): \(error)")
                        }
                    }
                    writeEnv(key!.secret)
                    // `node remove --rotate-keys` gave the env's key a new secret: the env follows.
                    if !startIdentity.joined {
                        rewriteEnv.set { if let s = catalog.secret(forAccessKey: envKeyID) { writeEnv(s) } }
                    }
                    announce(endpoint, newKey)
                }
            },
            logger: logger
        )
        try await app.runService()
        shards.close()
    }
}

/// An action set once it can run (nothing happens before).
final class Hook: Sendable {
    private let action = Mutex<(@Sendable () -> Void)?>(nil)
    func set(_ a: @escaping @Sendable () -> Void) { action.withLock { $0 = a } }
    func run() { action.withLock { $0 }?() }
}

/// The newest gossip ring (primary and keys) the cluster chose, as applied so far (entries replay in order).
final class NewestGossipKey: Sendable {
    let ring = Mutex<(primary: [UInt8], keys: [[UInt8]])?>(nil)
}

extension Agent {
    /// How long older gossip keys stay after a rotation, so that members applying it a little
    /// later still open this node's packets meanwhile.
    static let gossipKeyGrace = Duration.seconds(30)

    /// The ring a committed change asks every member to hold: a removal's rotation (the keys
    /// it drops kept for `gossipKeyGrace`), or `stacks keyring` (the operator moved the
    /// primary first, so a removed key goes at once).
    static func gossipRing(after c: Command) -> (primary: [UInt8], keys: [[UInt8]], grace: Duration)? {
        switch c {
        case .rotateGossipKey(let k): (k, [k], gossipKeyGrace)
        case .setGossipKeyring(_, let p, let ks): (p, ks, .zero)
        default: nil
        }
    }

    /// Makes this node's keyring the cluster's: every key of `keys` installed, `primary` sealing,
    /// and the others dropped after `grace`. Each step acts on the newest ring applied
    /// (`newest`), so changes replayed at start-up, whose tasks may run in any order, end on the last one.
    static func adoptGossipRing(
        _ primary: [UInt8], _ keys: [[UInt8]], grace: Duration, into newest: NewestGossipKey, gossip: GossipService, logger: Logger
    ) {
        newest.ring.withLock { $0 = (primary, keys) }
        Task {
            do {
                guard let (key, ring) = newest.ring.withLock({ $0 }) else { return }
                let held = try await gossip.keys()
                if held.primary != key || !ring.allSatisfy(held.keys.contains) {
                    _ = try await gossip.changeKeyring { r in
                        for k in ring { r.install(k) }
                        try r.use(key)
                    }
                    logger.info("gossip keyring changed by the cluster")
                }
                if grace > .zero { try await Task.sleep(for: grace) }
                guard let now = newest.ring.withLock({ $0 }), now.primary == key, now.keys == ring else { return }  // a later change's task finishes
                _ = try await gossip.changeKeyring { r in
                    guard r.primary == key else { return }
                    for k in r.keys where !ring.contains(k) { try r.remove(k) }
                }
            } catch {
                logger.warning("cannot adopt the cluster's gossip keyring: \(error)")
            }
        }
    }

    /// The founder's own credential (signed by the key it holds) and its entry among the
    /// cluster's nodes, once the cluster id is committed; retried until both are there.
    static func completeFounderIdentity(_ start: NodeIdentity, name: String, raft: RaftService, joins: JoinService, logger: Logger) async {
        var identity = start
        while !Task.isCancelled {
            do {
                try await raft.linearizableBarrier()
                let (clusterID, registered) = raft.read { ($0.clusterID, $0.nodes[name]) }
                guard let key = identity.clusterKey, let nodeKey = identity.nodeKey, !clusterID.isEmpty else {
                    throw ClusterError.unavailable("no cluster id yet")
                }
                if identity.credential == nil {
                    guard let c = key.issue(clusterID: clusterID, node: name, publicKey: nodeKey.publicKey, role: .all, issuedMs: nowMs()) else { return }
                    try identity.save(credential: c)
                    joins.update(identity)
                }
                if registered == nil, let c = identity.credential {
                    let o = try await raft.submit(
                        .registerNode(NodeRecord(name: name, publicKey: c.publicKey, role: c.role.rawValue, joinedMs: c.issuedMs, tokenID: "")))
                    if o != .ok { logger.warning("the cluster already has another node named \(name)") }
                }
                return
            } catch {
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

/// `DATA_DIR/admin`: where the admin API listens and the token it wants (mode 0600).
public struct AdminFile: Sendable, Equatable {
    public var url: String
    public var token: String

    public static func load(path: String) throws -> AdminFile {
        var url: String?, token: String?
        for line in String(decoding: try Files.read(path), as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("url=") { url = String(line.dropFirst(4)) }
            if line.hasPrefix("token=") { token = String(line.dropFirst(6)) }
        }
        guard let url, let token else { throw ConfigError(file: path, key: nil, line: nil, problem: "lacks url= or token=") }
        return AdminFile(url: url, token: token)
    }

    public func save(path: String) throws {
        try Files.writeAtomically(Array("url=\(url)\ntoken=\(token)\n".utf8), to: path)
    }
}
