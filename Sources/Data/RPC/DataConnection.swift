import Coordinator
import NIOCore
import NIOPosix
import Security
import Support
import Synchronization

/// Seals and opens the data connection's frames: the cluster key until node identity lands
/// (the agent hands in the gossip keyring, which rotates).
public protocol Sealer: Sendable {
    func seal(_ plaintext: [UInt8]) -> [UInt8]
    func open(_ sealed: [UInt8]) -> [UInt8]?
}

/// For connections whose frames are sealed by their own protocol.
struct NoSealer: Sealer {
    func seal(_ plaintext: [UInt8]) -> [UInt8] { plaintext }
    func open(_ sealed: [UInt8]) -> [UInt8]? { nil }
}

public struct DataConnectionError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One TCP connection between two nodes' data planes, used by one request at a time.
///
/// Each side first sends a fresh random challenge, then frames `length:u32 sealed` where the
/// sealed plaintext is bound to the *other* side's challenge and numbered (`SessionBinding`):
/// frame 0 each way is the hello, so both ends prove the key before any request, and a frame
/// recorded on one connection opens on no other. Before the hello nothing larger than
/// `helloMaxBytes` is read; after it frames are bounded by `maxFrameBytes`.
///
/// Backpressure both ways: `send` returns once its frame is in the kernel's socket buffer, and
/// the connection stops reading from the socket while two frames wait for `receive`. Sealing
/// and opening run in the caller's task, not on the event loop.
public final class DataConnection: @unchecked Sendable {
    public static let helloBody = Array("STKSDATA".utf8)
    public static let helloMaxBytes = 128
    /// A stripe's shard block is at most 4 MiB (`DataPlane.maxBlock`), plus framing and sealing.
    public static let maxFrameBytes = (4 << 20) + 4096

    let channel: any Channel
    let handler: DataHandler
    let sealer: any Sealer
    // The connection's one user owns these (the pool hands a connection to one task at a time).
    var sendSeq: UInt64 = 0
    var receiveSeq: UInt64 = 0
    var peerChallenge: [UInt8] = []
    /// The node handshake's session (credentialed nodes); nil on the pre-credential protocol.
    var session: NodeSession?
    public private(set) var established = false

    init(channel: any Channel, handler: DataHandler, sealer: any Sealer) {
        self.channel = channel; self.handler = handler; self.sealer = sealer
    }

    public var isOpen: Bool { channel.isActive && !handler.failed.load(ordering: .relaxed) }
    public var remote: String { channel.remoteAddress?.description ?? "?" }
    /// The peer's IP address alone, for limits per source.
    public var remoteHost: String { channel.remoteAddress?.ipAddress ?? "?" }

    /// The pipeline of a data connection, either end. A credentialed initiator opens with
    /// `NodeHandshake.magic` where the pre-credential protocol sends a challenge.
    static func install(on ch: any Channel, sealer: any Sealer, initiating: Bool = false) throws -> DataConnection {
        let handler =
            initiating
            ? DataHandler(challenge: NodeHandshake.magic, loop: ch.eventLoop, firstFrameMax: NodeHandshake.maxMessageBytes)
            : DataHandler(challenge: Sodium.randomBytes(SessionBinding.challengeBytes), loop: ch.eventLoop)
        try ch.pipeline.syncOperations.addHandler(handler)
        return DataConnection(channel: ch, handler: handler, sealer: sealer)
    }

    /// The first 16 bytes the peer sent: its challenge, or `JoinHandshake.magic` from a joiner.
    public func firstBytes() async throws -> [UInt8] { try await handler.peerChallenge.futureResult.get() }

    /// The peer's first bytes, or the connection closed once `timeout` passes without them: a
    /// stranger who connects and stays silent holds a slot no longer than that.
    public func firstBytes(timeout: TimeAmount) async throws -> [UInt8] {
        let ch = channel
        let timer = ch.eventLoop.scheduleTask(in: timeout) { ch.close(promise: nil) }
        defer { timer.cancel() }
        return try await firstBytes()
    }

    /// Exchanges hellos: returns once the peer has proved the key, throws (and closes) otherwise.
    public func handshake(timeout: TimeAmount) async throws {
        peerChallenge = try await firstBytes()
        try await sendRaw(Self.helloBody)
        guard try await receiveRaw(timeout: timeout) == Self.helloBody else { throw fail("the peer's first frame is not its hello") }
        established = true
    }

    /// The node handshake, connecting side: returns once both ends proved their credentials.
    public func authenticate(_ initiator: NodeHandshake.Initiator, timeout: TimeAmount) async throws {
        _ = try await firstBytes()  // the acceptor's challenge, unused by this protocol
        try await sendPlain(initiator.hello)
        let answer = try await receivePlain(timeout: timeout, maxBytes: NodeHandshake.maxMessageBytes)
        let (proof, s) = try initiator.finish(answering: answer)
        try await sendPlain(proof)
        session = s
        established = true
    }

    /// The node handshake, accepting side.
    public func accept(_ acceptor: NodeHandshake.Acceptor, timeout: TimeAmount) async throws {
        var acceptor = acceptor
        let hello = try await receivePlain(timeout: timeout, maxBytes: NodeHandshake.maxMessageBytes)
        try await sendPlain(try acceptor.answer(hello))
        let s = try acceptor.finish(try await receivePlain(timeout: timeout, maxBytes: NodeHandshake.maxMessageBytes))
        guard acceptor.purpose == .data else { throw fail("a Raft handshake on the data port") }
        session = s
        established = true
    }

    /// The credential the other end proved (nil on the pre-credential protocol).
    public var peer: NodeCredential? { session?.peer }

    public func send(_ frame: DataFrame) async throws { try await sendRaw(DataWire.encode(frame)) }

    /// The next frame; throws (and closes the connection) on a timeout, a frame that does not
    /// open, a replay or anything that does not decode.
    public func receive(timeout: TimeAmount) async throws -> DataFrame {
        let body = try await receiveRaw(timeout: timeout)
        do { return try DataWire.decode(body) } catch { throw fail("undecodable frame: \(error)") }
    }

    public func close() { channel.close(promise: nil) }

    /// A frame as it is, unsealed: the join handshake seals its own messages.
    public func sendPlain(_ body: [UInt8]) async throws {
        var buf = channel.allocator.buffer(capacity: 4 + body.count)
        buf.writeInteger(UInt32(body.count), endianness: .little)
        buf.writeBytes(body)
        try await channel.writeAndFlush(buf)
    }

    /// The next frame as it came, at most `maxBytes`.
    public func receivePlain(timeout: TimeAmount, maxBytes: Int) async throws -> [UInt8] {
        let h = handler, loop = channel.eventLoop
        let buf = try await withCheckedThrowingContinuation { (c: CheckedContinuation<ByteBuffer, any Error>) in
            loop.execute { h.take(c, timeout: timeout) }
        }
        guard buf.readableBytes <= maxBytes else { throw fail("a frame of \(buf.readableBytes) bytes, over \(maxBytes)") }
        return Array(buf.readableBytesView)
    }

    /// A connection to a member's data port that opens with `first` instead of a challenge (the
    /// joiner's magic), for a protocol of plain frames.
    public static func open(to address: String, sendingFirst first: [UInt8], maxFrameBytes: Int, timeout: TimeAmount) async throws -> DataConnection {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw DataConnectionError("not a host:port address: \(address)")
        }
        var host = Substring(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(DataHandler(challenge: first, loop: ch.eventLoop, firstFrameMax: maxFrameBytes))
                }
            }
            .connect(host: String(host), port: port).get()
        let handler = try await channel.pipeline.handler(type: DataHandler.self).get()
        return DataConnection(channel: channel, handler: handler, sealer: NoSealer())
    }

    func sendRaw(_ body: [UInt8]) async throws {
        let sealed: [UInt8]
        if session != nil {
            sealed = session!.seal(body)
        } else {
            sealed = sealer.seal(SessionBinding.bind(challenge: peerChallenge, seq: sendSeq, body))
            sendSeq += 1
        }
        var buf = channel.allocator.buffer(capacity: 4 + sealed.count)
        buf.writeInteger(UInt32(sealed.count), endianness: .little)
        buf.writeBytes(sealed)
        try await channel.writeAndFlush(buf)
    }

    func receiveRaw(timeout: TimeAmount) async throws -> [UInt8] {
        let h = handler, loop = channel.eventLoop
        let buf = try await withCheckedThrowingContinuation { (c: CheckedContinuation<ByteBuffer, any Error>) in
            loop.execute { h.take(c, timeout: timeout) }
        }
        if session != nil {
            guard let body = session!.open(Array(buf.readableBytesView)) else { throw fail("a frame that does not open in this connection's session") }
            return body
        }
        guard let plain = sealer.open(Array(buf.readableBytesView)),
            let body = SessionBinding.unbind(plain, challenge: handler.challenge, seq: receiveSeq)
        else { throw fail("a frame that does not open with the cluster key on this connection") }
        receiveSeq += 1
        return body
    }

    func fail(_ reason: String) -> DataConnectionError {
        handler.failed.store(true, ordering: .relaxed)
        close()
        return DataConnectionError(reason)
    }
}

/// A connection's framing and read demand, on its event loop (every mutable field is touched
/// there only).
final class DataHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Frames read ahead of `receive`, at most.
    static let readAhead = 2

    let challenge: [UInt8]
    let firstFrameMax: Int
    let peerChallenge: EventLoopPromise<[UInt8]>
    /// Set once the connection failed; read by the pool from any thread.
    let failed = Atomic<Bool>(false)
    var context: ChannelHandlerContext?
    var cumulation: ByteBuffer?
    var gotChallenge = false
    var framesRead = 0
    /// Frames still limited to a handshake message's size, whatever `firstFrameMax` says: the
    /// hello and proof of a node handshake, every frame of a join.
    var handshakeFrames = 0
    var frames = CircularBuffer<ByteBuffer>()
    var waiter: (CheckedContinuation<ByteBuffer, any Error>, Scheduled<Void>)?
    var readHeld = false
    var closedError: DataConnectionError?

    init(challenge: [UInt8], loop: any EventLoop, firstFrameMax: Int = DataConnection.helloMaxBytes) {
        self.challenge = challenge
        self.firstFrameMax = firstFrameMax
        peerChallenge = loop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: challenge)), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(DataConnectionError("connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(DataConnectionError("connection failed: \(error)"))
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil { cumulation = incoming } else { cumulation!.writeBuffer(&incoming) }
        while closedError == nil, let frame = nextFrame() { frames.append(frame) }
        if cumulation?.readableBytes == 0 { cumulation = nil } else { cumulation?.discardReadBytes() }
        deliver()
    }

    /// The next whole frame in `cumulation`, taking the peer's challenge first.
    func nextFrame() -> ByteBuffer? {
        guard var buf = cumulation else { return nil }
        defer { cumulation = buf }
        if !gotChallenge {
            guard let c = buf.readBytes(length: SessionBinding.challengeBytes) else { return nil }
            gotChallenge = true
            // Checked on the length prefix, before a byte of the frame is buffered.
            if c == NodeHandshake.magic { handshakeFrames = 2 } else if c == JoinHandshake.magic { handshakeFrames = .max }
            peerChallenge.succeed(c)
        }
        guard let n = buf.getInteger(at: buf.readerIndex, endianness: .little, as: UInt32.self) else { return nil }
        let limit =
            framesRead < handshakeFrames
            ? max(NodeHandshake.maxMessageBytes, JoinHandshake.maxMessageBytes) : framesRead == 0 ? firstFrameMax : DataConnection.maxFrameBytes
        guard Int(n) <= limit else {
            finish(DataConnectionError("a frame of \(n) bytes, over \(limit)"))
            context?.close(promise: nil)
            return nil
        }
        guard buf.readableBytes >= 4 + Int(n) else { return nil }
        buf.moveReaderIndex(forwardBy: 4)
        framesRead += 1
        return buf.readSlice(length: Int(n))
    }

    /// Socket reads stop while `readAhead` frames wait (the peer's sends then block in TCP).
    func read(context: ChannelHandlerContext) {
        if frames.count >= Self.readAhead { readHeld = true } else { context.read() }
    }

    func take(_ c: CheckedContinuation<ByteBuffer, any Error>, timeout: TimeAmount) {
        precondition(waiter == nil, "one receive at a time")
        guard let context else { return c.resume(throwing: DataConnectionError("not connected")) }
        let timer = context.eventLoop.scheduleTask(in: timeout) { [self] in
            finish(DataConnectionError("no answer within \(timeout.nanoseconds / 1_000_000) ms"))
            self.context?.close(promise: nil)
        }
        waiter = (c, timer)
        deliver()
    }

    func deliver() {
        guard let (c, timer) = waiter else { return }
        if let frame = frames.popFirst() {
            waiter = nil
            timer.cancel()
            c.resume(returning: frame)
            if readHeld && frames.count < Self.readAhead, let context {
                readHeld = false
                context.read()
            }
        } else if let closedError {
            waiter = nil
            timer.cancel()
            c.resume(throwing: closedError)
        }
    }

    func finish(_ error: DataConnectionError) {
        guard closedError == nil else { return }
        closedError = error
        failed.store(true, ordering: .relaxed)
        if !gotChallenge { peerChallenge.fail(error) }
        deliver()  // frames that arrived before the end are still read first
    }
}
