import Determinism
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Bounds on what S3 clients can hold open.
public struct S3Limits: Sendable, Equatable {
    /// Connections served at once; past it a request is answered 503 SlowDown and its connection closed.
    public var maxConnections = 1024
    /// A connection that sends nothing for this long (idle keep-alive, or a stalled request) is closed.
    public var idleTimeout = Span.seconds(60)
    public init(maxConnections: Int = 1024, idleTimeout: Span = .seconds(60)) {
        self.maxConnections = maxConnections; self.idleTimeout = idleTimeout
    }
}

/// Counts open S3 connections across the server. Each connection's pipeline gets a fresh
/// `ConnectionLimitHandler` from `handler()`.
public final class ConnectionCounter: Sendable {
    let limit: Int
    let open = Atomic<Int>(0)
    /// Connections refused because `limit` were open.
    public let refused = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    public func handler() -> ConnectionLimitHandler { ConnectionLimitHandler(counter: self) }
}

/// Takes a slot while its connection is open; without one, answers the first request 503
/// SlowDown with `Connection: close` and closes.
public final class ConnectionLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundOut = HTTPResponsePart

    let counter: ConnectionCounter
    private var holds = false, over = false, refusedRequest = false

    init(counter: ConnectionCounter) { self.counter = counter }

    public func handlerAdded(context: ChannelHandlerContext) {
        let n = counter.open.wrappingAdd(1, ordering: .relaxed).newValue
        holds = true
        over = n > counter.limit
        if over { counter.refused.wrappingAdd(1, ordering: .relaxed) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) { release() }
    public func channelInactive(context: ChannelHandlerContext) { release(); context.fireChannelInactive() }

    private func release() {
        if holds { counter.open.wrappingSubtract(1, ordering: .relaxed); holds = false }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refusedRequest { return }  // the rest of a refused connection's input
        guard over else { context.fireChannelRead(data); return }
        guard case .head = unwrapInboundIn(data) else { return }  // the refused request's body is dropped
        let body = S3Error(503, "SlowDown", "Too many connections to this node (\(counter.limit)); retry later.").xml
        var head = HTTPResponse(status: .serviceUnavailable)
        head.headerFields[.contentType] = "application/xml"
        head.headerFields[.contentLength] = "\(body.utf8.count)"
        head.headerFields[.connection] = "close"
        head.headerFields[.retryAfter] = "1"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(string: body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        over = false
        refusedRequest = true
    }
}
