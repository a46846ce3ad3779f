import Compression
import Files
import Gossip
import Logging
import NIOCore
import NIOPosix
import Security
import ServiceLifecycle
import Support
import Synchronization
import Telemetry

#if canImport(Glibc)
import Glibc
#endif

/// The UDP shell around the SWIM core: one event loop owns the core, the keyring and the socket,
/// feeds datagrams and 50 ms ticks in, and carries the effects out (encrypted sends, events).
public final class GossipService: Service, @unchecked Sendable {
    // @unchecked: every mutable field below is touched only on `loop`.
    let loop: any EventLoop
    let listen: ListenAddress
    let keyringPath: String
    let seeds: [String]
    /// The addresses of the members last seen alive, so that a restarted node finds the cluster
    /// again through them even when it had no seeds or its seeds are gone (Serf's snapshot and
    /// rejoin). A hint: read at start, rewritten at most once a second while membership changes.
    let peersPath: String?
    var peersWritten: [String] = []
    var peersDirty = false
    var ticks = 0
    let logger: Logger
    var core: SWIM
    var keyring: Keyring
    var channel: (any Channel)?
    var resolved: [String: SocketAddress] = [:]
    var metrics: GossipMetrics
    /// Cluster-wide keyring operations this node asked for, by id (see KeyringQuery.swift).
    var rollouts: [UInt64: Rollout] = [:]
    /// Keyring requests answered recently, for resends and against replays.
    var responder = KeyringResponder()
    /// A cluster with node credentials changes keyrings through its Raft log only: keyring
    /// messages are dropped (`keyring_by_log`), so a key in the ring (a removed node keeps the
    /// old one for the grace) neither changes a ring nor reads one. On the loop.
    var keyringByLog = false
    /// Datagrams read recently, so that one sent again is dropped (see ReplayWindow).
    var replays: ReplayWindow
    /// When a clock-skew drop was last logged (wall clock, ns): at most one warning a minute.
    var skewWarnedAt = Int64.min
    static let tickEvery = TimeAmount.milliseconds(50)
    /// The largest UDP payload over IPv4 (65,535 − 8 − 20).
    static let maxDatagramBytes = 65_507
    /// User tags a node may set: what every peer's decoder accepts, less room for the reserved ones.
    /// (Room is left for up to 8 reserved tags: Raft and data addresses, cluster, signer, data
    /// report, keyring, and spares.)
    public static let maxUserTags = WireFormat.maxTags - 8
    /// The reserved tag that tells which gossip keys a node holds: 12-hex-digit fingerprints,
    /// the primary first, never a key. `stacks keyring` on a cluster with credentials reads it
    /// instead of asking members over gossip.
    public static let keyringTag = "keyring"
    /// After a graceful leave, keep answering and gossiping this long so the news spreads.
    static let leaveLinger = TimeAmount.milliseconds(800)

    private let eventStream: AsyncStream<MembershipEvent>
    private let eventSink: AsyncStream<MembershipEvent>.Continuation
    /// Membership changes for the rest of the node (bounded: the newest 4096 are kept).
    public var events: AsyncStream<MembershipEvent> { eventStream }

    /// Tags the node itself sets (Raft address, cluster id); `setTags` keeps them. On the loop.
    var reservedTags: [String: String]
    /// The operator's tags (config or `stacks tags`). On the loop.
    var userTags: [String: String]

    public init(
        name: String, listen: ListenAddress, tags: [String: String], reservedTags: [String: String] = [:], seeds: [String], keyring: Keyring,
        keyringPath: String, peersPath: String? = nil, settings: SWIMSettings = SWIMSettings(), seed: UInt64, logger: Logger,
        metrics: Metrics = .disabled
    ) {
        self.reservedTags = reservedTags.merging([Self.keyringTag: Self.fingerprints(keyring)]) { a, _ in a }
        userTags = tags
        let reservedTags = self.reservedTags
        let tags = tags.merging(reservedTags) { _, reserved in reserved }
        loop = MultiThreadedEventLoopGroup.singleton.next()
        self.listen = listen
        self.keyring = keyring
        self.keyringPath = keyringPath
        self.peersPath = peersPath
        peersWritten = peersPath.map(Self.readPeers) ?? []
        self.seeds = seeds + peersWritten.filter { !seeds.contains($0) && $0 != listen.description }
        self.logger = logger
        core = SWIM(name: name, address: listen.description, tags: tags, settings: settings, seed: seed, now: Self.now())
        // Protocol periods are numbered on the wall clock, which nodes share (NTP), for the probe ring.
        core.periodClockOffset = Self.wallClock() - Self.now().nanoseconds
        replays = ReplayWindow(startedAt: Self.wallClock())
        (eventStream, eventSink) = AsyncStream.makeStream(of: MembershipEvent.self, bufferingPolicy: .bufferingNewest(4096))
        self.metrics = GossipMetrics(metrics)
        metrics.beforeScrape { [weak self] in
            guard let self else { return }
            try? await self.loop.submit { self.metrics.sample(self.core) }.get()
        }
    }

    static func now() -> Instant { Instant(NIODeadline.now()) }

    /// Nanoseconds since the epoch (CLOCK_REALTIME): comparable between nodes, unlike `now()`.
    static func wallClock() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    public func run() async throws {
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // NIO reads datagrams into 2,048-byte buffers by default and truncates the rest: big
            // tags and push-pull parts would arrive cut and fail to open. Room for any datagram.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.maxDatagramBytes))
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Inbound(service: self)) } }
            .bind(host: listen.host, port: listen.port).get()
        let ticker = try await loop.submit {
            self.channel = channel
            self.execute(self.core.join(seeds: self.seeds, now: Self.now()))
            return self.loop.scheduleRepeatedTask(initialDelay: Self.tickEvery, delay: Self.tickEvery) { _ in
                self.execute(self.core.tick(now: Self.now()))
                self.ticks += 1
                if self.ticks % 20 == 0 { self.savePeers() }
            }
        }.get()
        logger.info("gossip listening", metadata: ["address": "\(listen)", "seeds": "\(seeds)", "remembered": "\(peersWritten.count)"])
        try? await gracefulShutdown()
        try await loop.submit { self.execute(self.core.leave(now: Self.now())) }.get()
        try? await Task.sleep(for: .milliseconds(Self.leaveLinger.nanoseconds / 1_000_000))
        ticker.cancel()
        try? await channel.close()
        eventSink.finish()
    }

    // MARK: On the loop

    func execute(_ effects: [Effect]) {
        loop.preconditionInEventLoop()
        for e in effects {
            switch e {
            case .send(let packet, let to):
                if case .ping = packet.message { metrics.probesSent.increment() }
                send(Self.compress(WireFormat.encode(packet)), to: to, kind: GossipMetrics.kind(packet.message))
            case .event(let ev):
                if case .suspected = ev { metrics.suspected.increment() }
                eventSink.yield(ev)
                peersDirty = true
                switch ev {
                case .failed(let m), .suspected(let m), .left(let m), .joined(let m):
                    logger.info("member \(m.status)", metadata: ["member": "\(m.name)", "incarnation": "\(m.incarnation)"])
                case .updated:
                    break
                }
            }
        }
    }

    func savePeers() {
        guard let peersPath, peersDirty else { return }
        peersDirty = false
        let alive = core.members.filter { $0.name != core.name && ($0.status == .alive || $0.status == .suspect) }
        let addresses = alive.map(\.address).sorted()
        // With everyone else gone (the whole cluster down), keep the old list: it is how we come back.
        guard !addresses.isEmpty, addresses != peersWritten else { return }
        do {
            try Files.writeAtomically(Array((addresses.joined(separator: "\n") + "\n").utf8), to: peersPath, mode: 0o644)
            peersWritten = addresses
        } catch {
            logger.warning("cannot remember gossip peers: \(error)")
        }
    }

    /// The addresses in a peers file; none when it is missing or unreadable (it is only a hint).
    static func readPeers(_ path: String) -> [String] {
        guard Files.exists(path), let bytes = try? Files.read(path, limit: 16 << 20) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init).filter { ListenAddress($0) != nil }
    }

    func send(_ plaintext: [UInt8], to address: String, kind: String) {
        guard let target = resolve(address) else { return }
        send(plaintext, to: target, kind: kind)
    }

    func send(_ plaintext: [UInt8], to target: SocketAddress, kind: String) {
        guard let channel else { return }
        let sealed = keyring.sealDatagram(plaintext, stamp: Self.wallClock())
        metrics.countSent(kind, bytes: sealed.count)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: sealed)), promise: nil)
    }

    func resolve(_ address: String) -> SocketAddress? {
        if let a = resolved[address] { return a }
        guard let l = ListenAddress(address), let a = try? SocketAddress(ipAddress: l.host, port: l.port) else {
            logger.warning("cannot send to gossip address \(address): not ip:port")
            return nil
        }
        if resolved.count > 100_000 { resolved.removeAll() }
        resolved[address] = a
        return a
    }

    func receive(_ datagram: [UInt8], from sender: SocketAddress) {
        guard let opened = keyring.openDatagram(datagram) else {
            metrics.countReceived("unknown", bytes: datagram.count)
            return metrics.drop(Keyring.isUnstamped(datagram) ? "unstamped" : "unauthenticated")
        }
        let now = Self.wallClock(), verdict = replays.admit(id: opened.id, stamp: opened.stamp, wallClock: now)
        guard verdict == .fresh else {
            metrics.countReceived("unknown", bytes: datagram.count)
            return refuse(verdict, from: sender, wallClock: now)
        }
        guard let plain = Self.decompress(opened.payload) else {
            metrics.countReceived("unknown", bytes: datagram.count)
            return metrics.drop("malformed")
        }
        if plain.first == KeyringMessage.marker {
            metrics.countReceived("keyring", bytes: datagram.count)
            if keyringByLog { return metrics.drop("keyring_by_log") }
            guard let m = try? KeyringMessage.decode(plain) else { return metrics.drop("malformed") }
            return receiveKeyring(m, from: sender)
        }
        guard let packet = try? WireFormat.decode(plain) else {
            metrics.countReceived("unknown", bytes: datagram.count)
            return metrics.drop("malformed")
        }
        metrics.countReceived(GossipMetrics.kind(packet.message), bytes: datagram.count)
        execute(core.receive(packet, now: Self.now()))
    }

    func refuse(_ verdict: ReplayWindow.Verdict, from sender: SocketAddress, wallClock now: Int64) {
        switch verdict {
        case .fresh: break
        case .replayed: metrics.drop("replayed")
        case .stale: metrics.drop("stale")
        case .clockSkew:
            metrics.drop("clock_skew")
            guard now - skewWarnedAt >= 60_000_000_000 else { return }
            skewWarnedAt = now
            let skew = Int(ReplayWindow.maxClockSkew.seconds)
            logger.warning("gossip from \(sender) dropped: stamped over \(skew) s from our clock (check NTP on both, or it is a replay)")
        }
    }

    /// Big packets (push-pull states: names, addresses and tags repeat a lot) travel LZ4-compressed
    /// inside the seal: `0xC1 · rawSize:u32 · lz4(packet)`. A plain packet starts with the wire
    /// format's version byte (1), so the two never mix.
    static let compressedMarker: UInt8 = 0xC1
    static let compressAbove = 256

    static func compress(_ plain: [UInt8]) -> [UInt8] {
        guard plain.count > compressAbove, let c = LZ4.compressIfSmaller(plain) else { return plain }
        var w = BinaryWriter()
        w.u8(compressedMarker)
        w.u32(UInt32(plain.count))
        return w.bytes + c
    }

    /// nil for a damaged or oversized compressed packet.
    static func decompress(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.first == compressedMarker else { return bytes }
        guard bytes.count > 5 else { return nil }
        var r = BinaryReader(Array(bytes[1..<5]))
        guard let raw = try? r.u32(), raw <= 1 << 20 else { return nil }
        return try? LZ4.decompress(Array(bytes[5...]), rawSize: Int(raw))
    }

    final class Inbound: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let service: GossipService
        init(service: GossipService) { self.service = service }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            service.receive(Array(envelope.data.readableBytesView), from: envelope.remoteAddress)
        }
    }

    // MARK: Queries and commands from other tasks

    /// Joins (more) members through the given gossip addresses.
    public func join(_ seeds: [String]) async throws {
        try await loop.submit { self.execute(self.core.join(seeds: seeds, now: Self.now())) }.get()
    }

    /// Replaces this node's tags; members learn them through a fresh alive rumor.
    public func setTags(_ tags: [String: String]) async throws {
        try await loop.submit {
            self.userTags = tags
            self.execute(self.core.updateTags(tags.merging(self.reservedTags) { _, reserved in reserved }, now: Self.now()))
        }.get()
    }

    /// The members as the core sees them, and the keyring, read on gossip's loop.
    package func membersAndKeyring() -> EventLoopFuture<([Member], Keyring)> { loop.submit { (self.core.members, self.keyring) } }

    /// Sets one of the node's own tags (from the loop of any service; hops to gossip's).
    package func setReservedTag(_ key: String, _ value: String) {
        loop.execute { self.applyReservedTag(key, value) }
    }

    /// On the loop: sets one of the node's own tags and gossips the change.
    func applyReservedTag(_ key: String, _ value: String) {
        guard reservedTags[key] != value else { return }
        reservedTags[key] = value
        execute(core.updateTags(userTags.merging(reservedTags) { _, reserved in reserved }, now: Self.now()))
    }

    public func members() async throws -> [Member] { try await loop.submit { self.core.members }.get() }
    public func keys() async throws -> Keyring { try await loop.submit { self.keyring }.get() }

    /// From now on keyring changes come from the Raft log only; keyring messages are dropped.
    public func takeKeyringFromLog() { loop.execute { self.keyringByLog = true } }

    /// Applies a keyring change and persists it before returning.
    public func changeKeyring(_ change: @escaping @Sendable (inout Keyring) throws -> Void) async throws -> Keyring {
        try await loop.submit { try self.applyKeyring(change) }.get()
    }

    /// On the loop: changes the keyring, persisting it first when it changed.
    @discardableResult
    func applyKeyring(_ change: (inout Keyring) throws -> Void) throws -> Keyring {
        var k = keyring
        try change(&k)
        if k != keyring {
            try k.save(path: keyringPath)
            keyring = k
            applyReservedTag(Self.keyringTag, Self.fingerprints(k))
        }
        return k
    }

    /// A key's short public name: the first 6 bytes of its SHA-256, in hex.
    public static func fingerprint(_ key: [UInt8]) -> String { Digest.sha256(key).prefix(6).hex }

    /// The keyring tag's value: every key's fingerprint, the primary first.
    static func fingerprints(_ k: Keyring) -> String { k.keys.map(fingerprint).joined(separator: ",") }
}
