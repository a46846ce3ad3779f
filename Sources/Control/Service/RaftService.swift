import Cluster
import Files
import Gossip
import Logging
import Membership
import NIOCore
import NIOPosix
import Raft
import RaftLog
import Security
import ServiceLifecycle
import Synchronization
import Telemetry

public enum ClusterError: Error, CustomStringConvertible, Equatable {
    case unavailable(String)
    /// A bound in `RaftServiceSettings` is reached: retry after a moment.
    case busy(String)
    /// This node's role may not propose the change (see `Roles`).
    case forbidden(String)
    public var description: String {
        switch self {
        case .unavailable(let why): "cluster unavailable: \(why)"
        case .busy(let why): "cluster busy: \(why)"
        case .forbidden(let why): why
        }
    }
}

public struct RaftServiceSettings: Sendable {
    /// One logical Raft tick.
    public var tick = TimeAmount.milliseconds(50)
    /// Heartbeat every 2 ticks (100 ms), election timeout 20–40 ticks (1–2 s): etcd's defaults.
    public var raft: RaftSettings = {
        var r = RaftSettings()
        r.heartbeatTicks = 2
        r.electionTicks = 20
        r.maxEntriesPerAppend = 256
        return r
    }()
    public var voters = 5
    public var deadVoterAfter = Span.seconds(10)
    /// How long a node may be dead or left before it leaves the layout (`data.remove_after`).
    public var removeAfter = Span.seconds(600)
    /// Applied entries between snapshots of the cluster state (etcd's default snapshot count).
    public var compactEvery: UInt64 = 100_000
    /// How long a change or a linearizable read may wait for a leader.
    public var requestTimeout = Span.seconds(10)
    /// A connection must prove the key (its hello) this soon after connecting, or is closed.
    public var helloTimeout = Span.seconds(2)
    /// An accepted connection that sends nothing for this long is closed (links carry
    /// heartbeats or replies every few ticks; an idle one reconnects when next needed).
    public var idleTimeout = Span.seconds(60)
    /// Accepted connections at once in all; of them from sources that are no member's address,
    /// at most `maxStrangers`, and `maxInboundPerHost` from one. More are closed at accept.
    public var maxInboundPerHost = 64
    public var maxStrangers = 256
    public var maxInbound = 1024
    /// Changes and linearizable reads waiting on this node; past it a new one is refused (busy).
    public var maxWaiting = 10_000
    /// On the leader: proposals queued for the next batch and followers' reads relayed; past it a
    /// forwarded request or read is dropped (the follower resends).
    public var maxQueued = 10_000
    /// Peers remembered as heard from (when, and at which Raft address). Past it, names that are
    /// neither in the Raft configuration nor gossip members are forgotten; if all are, a new
    /// name's frames are still handled but it is not remembered.
    public var maxPeersHeard = 10_000
    public init() {}
}

/// The Raft shell: one event loop owns the core, the write-ahead log, the cluster state machine
/// and the TCP transport. Inputs (frames, ticks, requests) run on the loop; each `Ready` is made
/// durable (one fsync), its messages sent, its committed entries applied, in that order.
///
/// Requests carry a random id. A follower forwards them to the leader and resends after a leader
/// change; the state machine applies each id once, and the waiter on any node is answered when
/// that node applies it — so a write acknowledged by node X is readable on X.
public final class RaftService: Service, @unchecked Sendable {
    // @unchecked: every mutable field below is touched only on `loop`, except `stateBox` (a Mutex).
    let loop: any EventLoop
    public let name: String
    let listen: ListenAddress
    let settings: RaftServiceSettings
    let gossip: GossipService
    let logger: Logger
    let wal: RaftLog
    var core: RaftNode
    let stateBox = Mutex(ClusterState())
    /// Side effects of applied commands on this node (bucket directories); run on the loop.
    let onApply: @Sendable (Command, Outcome) -> Void
    let onRestore: @Sendable (ClusterState) -> Void
    /// This run created the cluster (first node, empty log).
    public let founded: Bool

    /// Changes and linearizable reads waiting on this node (see RaftRequests.swift), and the
    /// promises of their callers.
    var router: RequestRouter
    var changePromises: [RequestID: EventLoopPromise<Outcome>] = [:]
    var readPromises: [UInt64: EventLoopPromise<Void>] = [:]
    var proposals: [[UInt8]] = []
    var flushScheduled = false

    /// On the leader: core read id → (follower, its read id).
    var remoteReads: [UInt64: (from: String, id: UInt64)] = [:]
    /// Core read ids for followers' reads count from 2^63; the router's own count from 1.
    var nextRelayID: UInt64 = 1 << 63

    final class Link: @unchecked Sendable {  // touched only on the loop
        var address: String
        var channel: (any Channel)?
        /// The acceptor's challenge once read (pre-credential protocol), or the session once the
        /// node handshake finished; frames wait in `pending` until then.
        var challenge: [UInt8]?
        var session: NodeSession?
        var ready: Bool { challenge != nil || session != nil }
        var seq: UInt64 = 0
        var connecting = false
        /// Frames' plaintext, sealed when the connection's challenge is known.
        var pending: [[UInt8]] = []
        var retryAt = NIODeadline.uptimeNanoseconds(0)
        init(address: String) { self.address = address }
    }
    /// Accepted connections, members' and strangers' (bounded by the settings).
    lazy var inbound = InboundBudget(maxTotal: settings.maxInbound, maxStrangers: settings.maxStrangers, maxPerStranger: settings.maxInboundPerHost)
    /// Connections refused at accept for crossing those bounds.
    public internal(set) var inboundRefused = 0
    var links: [String: Link] = [:]
    var dirty: Set<String> = []
    var members: [String: Member] = [:]
    var keyring: Keyring
    var lastHeard: [String: NIODeadline] = [:]
    /// Raft addresses peers gave in their frames (used until gossip knows them).
    var heardAt: [String: String] = [:]
    /// The layout version the leader is proposing, until its commit answers.
    var layoutProposed: UInt64?
    var ticks: UInt64 = 0
    /// A snapshot is being written off the loop.
    var compacting = false
    /// This node's own extra distance between snapshots (up to a quarter of `compactEvery`), so
    /// that the members of a group, which apply the same entries, do not all encode and write
    /// their state at the same moment.
    lazy var compactOffset = UInt64.random(in: 0...(settings.compactEvery / 4))
    /// This node's cluster id once known (mirrors the state; gossiped as the `cluster` tag).
    var clusterID = ""
    public internal(set) var foreignFrames = 0
    var server: (any Channel)?
    var ticker: RepeatedTask?
    public internal(set) var framesDropped = 0
    var metrics: RaftMetrics
    /// The leader last seen, to count changes.
    var lastLeader: String?
    /// Called (on the loop) when the group's shape as `stacks status` shows it changes: role,
    /// leader, term, voters or learners. Set before the service runs.
    public var onShapeChange: (@Sendable () -> Void)?
    /// Credentials for connections; set before the service runs. A node with an identity speaks
    /// only the node handshake, one without only the pre-credential protocol.
    public var authority: (any PeerAuthority)?
    /// Connections refused for a peer that did not prove a credential of this cluster.
    public internal(set) var handshakesRefused = 0
    /// Frames refused from authenticated members (impersonation, or a change beyond their role).
    var membersRefused = 0
    var lastShape: Shape?
    struct Shape: Equatable {
        var leader: String?
        var term: Term
        var leading: Bool
        var voters: Set<String>
        var learners: Set<String>
    }
    /// Raft gets a thread of its own: its fdatasync blocks only Raft, never an HTTP connection
    /// that happens to share an event loop with it.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Opens the log in `directory` and restores the state machine from it. With `bootstrap` and
    /// an empty log, this node founds a new cluster as its only voter.
    public init(
        name: String, directory: String, listen: ListenAddress, bootstrap: Bool, gossip: GossipService, keyring: Keyring,
        settings: RaftServiceSettings = RaftServiceSettings(), logger: Logger, metrics: Metrics = .disabled,
        onApply: @escaping @Sendable (Command, Outcome) -> Void, onRestore: @escaping @Sendable (ClusterState) -> Void
    ) throws {
        loop = Self.group.next()
        self.name = name
        self.listen = listen
        self.settings = settings
        var routing = RequestRouter.Settings()
        routing.maxWaiting = settings.maxWaiting
        routing.timeout = settings.requestTimeout
        router = RequestRouter(settings: routing)
        self.gossip = gossip
        self.keyring = keyring
        self.logger = logger
        self.onApply = onApply
        self.onRestore = onRestore
        wal = try RaftLog(directory: directory)
        self.metrics = RaftMetrics(metrics)
        wal.onSync = { [timer = self.metrics.fsyncTimer] nanoseconds in timer.recordNanoseconds(nanoseconds) }
        let fresh = wal.snapshot == nil && wal.entries.isEmpty && wal.hardState.term == Term(0)
        founded = fresh && bootstrap
        if founded {
            // The first entries name the first voter and give the cluster its id; committed by
            // construction (a cluster of one), so the id is known before any peer is contacted.
            var r = Ready()
            r.entries = [
                Entry(term: Term(1), index: LogIndex(1), kind: .config, data: ConfigChange.addVoter(name).encoded),
                Entry(term: Term(1), index: LogIndex(2), data: Request(id: .random(), command: .initCluster(id: Sodium.randomBytes(8).hex)).encoded),
            ]
            r.hardState = HardState(term: Term(1), vote: name, commit: LogIndex(2))
            try wal.save(r)
        }
        core = RaftNode(
            id: name, peers: [], hardState: wal.hardState, snapshot: wal.snapshot, log: wal.entries,
            settings: settings.raft, seed: UInt64.random(in: .min ... .max))
        core.snapshotCheck = { (try? ClusterState(decoding: $0)) != nil }
        if let s = wal.snapshot {
            let state = try ClusterState(decoding: s.data)
            stateBox.withLock { $0 = state }
        }
        metrics.beforeScrape { [weak self] in
            guard let self else { return }
            try? await self.loop.submit {
                self.metrics.sample(
                    self.core, framesDropped: self.framesDropped, foreignFrames: self.foreignFrames,
                    inboundRefused: self.inboundRefused, handshakesRefused: self.handshakesRefused, inbound: self.inbound.total)
            }.get()
        }
    }

    /// The cluster state a stopped node's log holds (its snapshot, then the entries it knew were
    /// committed), read offline: what a removed node's disk still tells (`stacks debug unseal`).
    public static func committedState(directory: String) throws -> ClusterState {
        let wal = try RaftLog(directory: directory)
        var state = try wal.snapshot.map { try ClusterState(decoding: $0.data) } ?? ClusterState()
        let after = wal.snapshot?.index ?? .zero
        for e in wal.entries where e.index > after && e.index <= wal.hardState.commit && e.kind == .normal {
            if let r = try? Request(decoding: e.data) { state.apply(r) }
        }
        return state
    }

    // MARK: Reads for the rest of the node (local replica, any thread)

    public func read<T>(_ body: (ClusterState) -> T) -> T { stateBox.withLock { body($0) } }

    // MARK: Lifecycle

    public func run() async throws {
        let server = try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try self.addAcceptedHandlers(ch) } }
            .bind(host: listen.host, port: listen.port).get()
        try await loop.submit {
            self.server = server
            if self.wal.snapshot != nil {
                self.onRestore(self.read { $0 })
                self.learnClusterID()
            }
            self.handle(self.core.tick())  // applies what the log already committed
            if self.core.voters == [self.name] { self.handle(self.core.campaignNow()) }
            self.ticker = self.loop.scheduleRepeatedTask(initialDelay: self.settings.tick, delay: self.settings.tick) { _ in self.onTick() }
            self.refreshMembership()
        }.get()
        logger.info("raft listening", metadata: ["address": "\(listen)", "founded": "\(founded)"])
        try? await gracefulShutdown()
        try await loop.submit {
            self.ticker?.cancel()
            // Hand leadership to an up-to-date voter so the cluster does not wait out a timeout.
            if self.core.isLeader, case .leader(let p) = self.core.role,
                let target = self.core.voters.filter({ $0 != self.name && p.match[$0] == self.core.lastIndex }).sorted().first,
                let r = self.core.transferLeadership(to: target)
            {
                self.handle(r)
            }
            self.perform(self.router.failAll(reason: "node shutting down"))
        }.get()
        try? await Task.sleep(for: .milliseconds(100))  // let the transfer's timeoutNow leave
        try await loop.submit {
            for l in self.links.values { l.channel?.close(promise: nil) }
            self.server?.close(promise: nil)
        }.get()
    }

    // MARK: The loop

    func onTick() {
        ticks += 1
        handle(core.tick())
        let now = NIODeadline.now()
        perform(router.tick(now: Instant(now), view: routerView))
        let shape = Shape(leader: core.leader, term: core.term, leading: core.isLeader, voters: core.voters, learners: core.learners)
        if shape != lastShape {
            lastShape = shape
            onShapeChange?()
        }
        if ticks % 5 == 0 { refreshMembership() }
        if ticks % 10 == 0 && core.isLeader { manageVoters(now: now) }
        if ticks % 20 == 0 && core.isLeader { manageLayout(now: now) }
        flushLinks()
    }

    /// Makes a Ready durable, sends it, applies it. A failing disk stops the node: serving
    /// after a lost write could acknowledge what is not stored.
    func handle(_ r: Ready) {
        if r.isEmpty { return }
        // A leader's appends may leave before its own fsync (Raft thesis §10.2.1): replies are
        // handled on this loop only after the fsync below, so nothing commits on an entry the
        // leader has not stored, and the disk write overlaps the followers' round trip.
        // Everything else (votes, replies) waits for the disk.
        let leading = core.isLeader
        func early(_ m: Envelope) -> Bool { if leading, case .append = m.message { true } else { false } }
        if leading {
            for m in r.messages where early(m) {
                send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: m.to, frame: .raft(m.message)))
            }
            flushLinks()
        }
        if let l = core.leader, l != lastLeader {
            if lastLeader != nil || l != name { metrics.leaderChanged.increment() }
            lastLeader = l
        }
        do {
            if let s = r.snapshot {
                let state = try ClusterState(decoding: s.data)  // before it replaces what is on disk
                try wal.saveSnapshot(s)
                metrics.snapshots.record(s.data.count)
                stateBox.withLock { $0 = state }
                onRestore(state)
                learnClusterID()
            }
            try wal.save(r)
        } catch {
            logger.critical("raft log write failed; stopping", metadata: ["error": "\(error)"])
            fatalError("stacks: raft log write failed: \(error)")
        }
        for m in r.messages where !early(m) {
            send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: m.to, frame: .raft(m.message)))
        }
        for e in r.committed { apply(e) }
        for rs in r.readStates {
            if let remote = remoteReads.removeValue(forKey: rs.id) {
                send(
                    AddressedFrame(
                        from: name, fromAddress: listen.description, cluster: clusterID, to: remote.from, frame: .readIndexReply(id: remote.id, index: rs.index)
                    ))
            } else {
                perform(router.readIndex(id: rs.id, rs.index, applied: core.applied))
            }
        }
        perform(router.served(applied: core.applied))
        maybeCompact()
        flushLinks()
    }

    func apply(_ e: Entry) {
        guard e.kind == .normal, !e.data.isEmpty else { return }
        guard let req = try? Request(decoding: e.data) else {
            logger.error("skipping undecodable entry", metadata: ["index": "\(e.index)"])
            return
        }
        let (outcome, duplicate) = stateBox.withLock { $0.apply(req) }
        if !duplicate { onApply(req.command, outcome) }
        if case .initCluster = req.command { learnClusterID() }
        if router.applied(req.id) { changePromises.removeValue(forKey: req.id)?.succeed(outcome) }
    }

    /// Every `compactEvery` applied entries: encode and write the state on a pool thread (the
    /// loop keeps serving), then compact the log on the loop. The state is a value: the copy
    /// taken here does not change while it is written.
    func maybeCompact() {
        let base = core.snapshot?.index.value ?? 0
        guard !compacting, core.applied.value - base >= settings.compactEvery + compactOffset else { return }
        compacting = true
        let index = core.applied, state = read { $0 }, directory = wal.directory
        let probe = core.snapshot(through: index, data: [])
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () -> Snapshot? in
            guard var s = probe else { return nil }
            s.data = state.encoded()
            try RaftLog.writePending(s, directory: directory)
            return s
        }.whenComplete { result in
            self.compacting = false
            switch result {
            case .success(let written?):
                // Still ahead of the current snapshot (an installed one may have overtaken it)?
                guard let s = self.core.compact(through: written.index, data: written.data) else { return }
                self.metrics.snapshots.record(s.data.count)
                do { try self.wal.adoptPending(s) } catch {
                    self.logger.critical("raft snapshot write failed; stopping", metadata: ["error": "\(error)"])
                    fatalError("stacks: raft snapshot write failed: \(error)")
                }
            case .success(nil): break
            case .failure(let error):
                self.logger.critical("raft snapshot write failed; stopping", metadata: ["error": "\(error)"])
                fatalError("stacks: raft snapshot write failed: \(error)")
            }
        }
    }

    func learnClusterID() {
        let id = read { $0.clusterID }
        guard id != clusterID, !id.isEmpty else { return }
        clusterID = id
        gossip.setReservedTag(Self.clusterTag, id)
    }

}

extension RequestID {
    /// Unique, not secret: the system generator, no allocation.
    public static func random() -> RequestID { RequestID(hi: .random(in: .min ... .max), lo: .random(in: .min ... .max)) }
}
