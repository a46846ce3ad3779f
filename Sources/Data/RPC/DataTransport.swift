import Coordinator
import Files
import Logging
import NIOCore
import NIOPosix
import Security
import ServiceLifecycle
import Synchronization

public struct DataSettings: Sendable {
    /// How long a peer may take to prove the key after connecting.
    public var helloTimeout: TimeAmount = .seconds(5)
    /// How long a server waits for the next request on an idle connection.
    public var idleTimeout: TimeAmount = .seconds(60)
    /// How long a client waits for any one answer or stripe.
    public var requestTimeout: TimeAmount = .seconds(30)
    public var connectTimeout: TimeAmount = .milliseconds(1000)
    /// Idle client connections kept per peer, and for how long (below the server's idle timeout).
    public var idlePerPeer = 32
    public var keepIdle: TimeAmount = .seconds(20)
    /// Accepted connections at once; past it new ones are closed at once. Of them, from sources
    /// that are no member's address, at most `maxStrangers`, and `maxPerStranger` from one.
    public var maxInbound = 1024
    public var maxStrangers = 256
    public var maxPerStranger = 64
    public init() {}
}

/// Accepted data connections, and the budget they are counted in.
struct Inbound {
    var channel: (any Channel)?
    var open: [ObjectIdentifier: DataConnection] = [:]
    var budget: InboundBudget
    var stopped = false
}

/// The data connection's server: accepts connections, proves the key both ways, then runs each
/// connection's `ShardServer` with its disk work on the thread pool. A `getShard` answer streams
/// one record at a time, each read only once the previous one is in the socket (backpressure).
public final class DataServer: Service, Sendable {
    let host: String
    let port: Int
    let backend: any ShardBackend
    let sealer: any Sealer
    let door: (any JoinDoor)?
    let authority: (any PeerAuthority)?
    let settings: DataSettings
    let pool: NIOThreadPool
    let logger: Logger
    let state: Mutex<Inbound>
    /// Whether a source address is a member's (its connections skip the strangers' caps).
    let isMember: @Sendable (String) -> Bool
    let refusedCount = Atomic<Int>(0)
    let refusedAtAcceptCount = Atomic<Int>(0)

    /// Connections refused for a peer that did not prove a credential of this cluster (or is removed).
    public var handshakesRefused: Int { refusedCount.load(ordering: .relaxed) }
    /// Connections closed as they were accepted: over `maxInbound`, `maxStrangers` or `maxPerStranger`.
    public var refusedAtAccept: Int { refusedAtAcceptCount.load(ordering: .relaxed) }

    public init(
        host: String, port: Int, backend: any ShardBackend, sealer: any Sealer, door: (any JoinDoor)? = nil, authority: (any PeerAuthority)? = nil,
        settings: DataSettings = DataSettings(), pool: NIOThreadPool = .singleton, isMember: @escaping @Sendable (String) -> Bool = { _ in false },
        logger: Logger
    ) {
        self.host = host; self.port = port; self.backend = backend; self.sealer = sealer; self.door = door; self.authority = authority
        self.settings = settings; self.pool = pool; self.isMember = isMember; self.logger = logger
        let budget = InboundBudget(maxTotal: settings.maxInbound, maxStrangers: settings.maxStrangers, maxPerStranger: settings.maxPerStranger)
        state = Mutex(Inbound(budget: budget))
    }

    /// Binds the listener; returns the port (useful with port 0).
    @discardableResult
    public func start() async throws -> Int {
        let sealer = self.sealer
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    let conn = try DataConnection.install(on: ch, sealer: sealer)
                    self.accepted(conn)
                }
            }
            .bind(host: host, port: port).get()
        let p = channel.localAddress?.port ?? port
        state.withLock { $0.channel = channel }
        return p
    }

    /// Accepted connections open now.
    public var connections: Int { state.withLock { $0.open.count } }

    /// Stops listening and closes every connection.
    public func stop() async {
        let (ch, open) = state.withLock { s in
            defer { s.channel = nil; s.open = [:]; s.stopped = true }
            return (s.channel, Array(s.open.values))
        }
        try? await ch?.close()
        for c in open { c.close() }
    }

    /// Runs as a service: starts, waits for shutdown, stops.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await stop()
    }

    func accepted(_ conn: DataConnection) {
        let host = conn.remoteHost, member = isMember(host)
        let admitted = state.withLock { s -> Bool in
            guard !s.stopped, s.budget.admit(host, member: member) else { return false }
            s.open[ObjectIdentifier(conn)] = conn
            return true
        }
        guard admitted else {
            let n = refusedAtAcceptCount.add(1, ordering: .relaxed).newValue
            if n & (n - 1) == 0 {  // 1st, 2nd, 4th, 8th…
                logger.warning("refusing data connections over the limits", metadata: ["from": "\(host)", "count": "\(n)"])
            }
            conn.close()
            return
        }
        Task {
            await self.serve(conn)
            self.state.withLock { s in
                s.open[ObjectIdentifier(conn)] = nil
                s.budget.release(host, member: member)
            }
        }
    }

    func serve(_ conn: DataConnection) async {
        let server = Box(ShardServer(backend: backend))
        defer {
            server.value.closed()
            conn.close()
        }
        do {
            let first = try await conn.firstBytes(timeout: settings.helloTimeout)
            if first == JoinHandshake.magic {
                if let door { await door.serveJoin(conn) }
                return
            }
            if let identity = authority?.identity, let authority {
                guard first == NodeHandshake.magic else { throw HandshakeError("a peer without a credential (the protocol from before join tokens)") }
                do {
                    try await conn.accept(
                        NodeHandshake.Acceptor(identity: identity, ephemeral: Sodium.KeyExchange.keyPair(), admit: { authority.admit($0) }),
                        timeout: settings.helloTimeout)
                } catch let e as HandshakeError { throw e } catch {
                    // Gone mid-handshake: typically a peer that refused this node's proof.
                    throw HandshakeError("the peer left the handshake: \(error)")
                }
            } else {
                guard first != NodeHandshake.magic else { return }  // a credentialed peer; this node has none
                try await conn.handshake(timeout: settings.helloTimeout)
            }
            while true {
                let frame = try await conn.receive(timeout: settings.idleTimeout)
                if let peer = conn.peer, let why = authority?.admit(peer) { throw HandshakeError(why) }  // removed since the handshake
                switch try await pool.runIfActive({ server.value.handle(frame) }) {
                case .none: continue
                case .frame(let answer): try await conn.send(answer)
                case .frames(let answers): for a in answers { try await conn.send(a) }
                case .stream(let source, let range):
                    try await stream(Box(source), range, on: conn)
                case .close(let reason):
                    logger.warning("closing a data connection", metadata: ["peer": "\(conn.remote)", "reason": "\(reason)"])
                    return
                }
            }
        } catch let e as HandshakeError {
            let n = refusedCount.add(1, ordering: .relaxed).newValue
            if n & (n - 1) == 0 {  // 1st, 2nd, 4th, 8th…
                logger.warning("refused a data connection", metadata: ["peer": "\(conn.remote)", "why": "\(e)", "count": "\(n)"])
            }
        } catch {
            if conn.established { logger.debug("data connection ended", metadata: ["peer": "\(conn.remote)", "why": "\(error)"]) }
        }
    }

    func stream(_ source: Box<any ShardSource>, _ range: Range<Int>, on conn: DataConnection) async throws {
        try await conn.send(.meta(source.value.meta))
        for i in range {
            let record: (header: [UInt8], bytes: [UInt8])
            do { record = try await pool.runIfActive { try source.value.record(i) } } catch let e as FileError {
                try await conn.send(.error(ShardServer.error(e)))  // a corrupt record ends the stream; the reader goes elsewhere
                return
            }
            try await conn.send(.stripe(header: record.header, bytes: record.bytes))
        }
        try await conn.send(.end)
    }
}

/// Where a member's data port hands a joining node (one that opened with `JoinHandshake.magic`).
public protocol JoinDoor: Sendable {
    /// Runs the join handshake over the connection's plain frames; the server closes it after.
    func serveJoin(_ conn: DataConnection) async
}

/// A reference handed between the connection's task and the thread pool; one user at a time.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// Connections to peers' data servers, kept for reuse: `withConnection` lends one (an idle one
/// or a new one, hellos exchanged) to one request, and takes it back when the request ended in
/// step; a connection whose request threw is closed, since its stream may be mid-frame.
public final class DataClient: Sendable {
    let sealer: any Sealer
    let authority: (any PeerAuthority)?
    let settings: DataSettings
    let idle = Mutex<[String: [(DataConnection, NIODeadline)]]>([:])
    let wrongPeerCount = Atomic<Int>(0)

    /// Connections dropped because the node that answered was not the one asked for.
    public var wrongPeers: Int { wrongPeerCount.load(ordering: .relaxed) }

    public init(sealer: any Sealer, authority: (any PeerAuthority)? = nil, settings: DataSettings = DataSettings()) {
        self.sealer = sealer; self.authority = authority; self.settings = settings
    }

    public var requestTimeout: TimeAmount { settings.requestTimeout }

    public func withConnection<T: Sendable>(to address: String, node: String? = nil, _ body: (DataConnection) async throws -> T) async throws -> T {
        let conn = try await connect(to: address, node: node)
        do {
            let result = try await body(conn)
            release(conn, to: address)
            return result
        } catch {
            conn.close()
            throw error
        }
    }

    /// A connection to `address`, hellos exchanged: an idle one, or a new one. Give it back with
    /// `release` once its request ended in step, or `close` it. With credentials and `node`, the
    /// peer must prove it is that node: an address gossip gave another node, or a member answering
    /// for another, is refused (counted in `wrongPeers`).
    public func connect(to address: String, node: String? = nil) async throws -> DataConnection {
        let now = NIODeadline.now()
        while let (c, since) = idle.withLock({ $0[address]?.popLast() }) {
            if c.isOpen && now - since < settings.keepIdle && (node == nil || c.peer == nil || c.peer?.node == node) { return c }
            c.close()
        }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw DataConnectionError("not a host:port address: \(address)")
        }
        var host = Substring(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        let sealer = self.sealer, identity = authority?.identity, authority = self.authority
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(settings.connectTimeout)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { _ = try DataConnection.install(on: ch, sealer: sealer, initiating: identity != nil) }
            }
            .connect(host: String(host), port: port).get()
        let conn: DataConnection
        do {
            let handler = try await channel.pipeline.handler(type: DataHandler.self).get()
            conn = DataConnection(channel: channel, handler: handler, sealer: sealer)
            if let identity, let authority {
                try await conn.authenticate(
                    NodeHandshake.Initiator(identity: identity, purpose: .data, ephemeral: Sodium.KeyExchange.keyPair(), admit: { authority.admit($0) }),
                    timeout: settings.helloTimeout)
                if let node, let peer = conn.peer?.node, peer != node {
                    wrongPeerCount.add(1, ordering: .relaxed)
                    throw DataConnectionError("the node at \(address) is \(peer), not \(node)")
                }
            } else {
                try await conn.handshake(timeout: settings.helloTimeout)
            }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return conn
    }

    public func release(_ conn: DataConnection, to address: String) {
        guard conn.isOpen else { return conn.close() }
        let kept = idle.withLock { pool -> Bool in
            guard pool[address, default: []].count < settings.idlePerPeer else { return false }
            pool[address, default: []].append((conn, .now()))
            return true
        }
        if !kept { conn.close() }
    }

    /// Closes every idle connection (at shutdown).
    public func closeAll() {
        let all = idle.withLock { pool in
            defer { pool = [:] }
            return pool.values.flatMap { $0.map(\.0) }
        }
        for c in all { c.close() }
    }
}
