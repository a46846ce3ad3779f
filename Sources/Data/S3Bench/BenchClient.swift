import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import S3

/// An S3 endpoint the bench talks to: plain HTTP, path-style addressing.
public struct BenchEndpoint: Sendable {
    public let host: String
    public let port: Int
    public let url: String

    public init(_ url: String) throws(BenchError) {
        guard url.hasPrefix("http://") else {
            throw BenchError("endpoint \(url) must be an http:// URL (the bench speaks plain HTTP; put a TLS endpoint behind a local proxy)")
        }
        let rest = url.dropFirst("http://".count).split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        let parts = rest.split(separator: ":")
        guard parts.count <= 2, let h = parts.first, !h.isEmpty else { throw BenchError("endpoint \(url) has no host") }
        let p = parts.count == 2 ? Int(parts[1]) : 80
        guard let port = p, (1...65535).contains(port) else { throw BenchError("endpoint \(url) has a bad port") }
        (host, self.port, self.url) = (String(h), port, url)
    }

    var hostHeader: String { port == 80 ? host : "\(host):\(port)" }
}

/// The answer to one request: status, bytes of body, and the body itself when asked for or
/// when the status is an error (at most 64 KiB kept).
struct BenchResponse {
    var status: Int
    var bytes: Int
    var body: String
    var close: Bool
}

/// Sends one request on a connection to `endpoint` and reads its answer: method, target,
/// headers, body length, the chunk the body repeats, whether to keep the body.
struct BenchSender {
    let endpoint: BenchEndpoint
    let send: (HTTPMethod, String, [(String, String)], Int, ByteBuffer?, Bool) async throws -> BenchResponse
}

/// One keep-alive HTTP/1.1 connection of one worker. Requests go one at a time.
enum BenchConnection {
    typealias Channel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
    static let keep = 64 << 10

    /// Connects and runs `body` with the connection's sender; the connection closes when `body`
    /// returns or throws.
    static func with<T>(_ endpoint: BenchEndpoint, _ body: (BenchSender) async throws -> T) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try Channel(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            return try await body(
                BenchSender(endpoint: endpoint) { method, target, headers, length, chunk, wantBody in
                    var h = HTTPHeaders(headers)
                    if method == .PUT || length > 0 { h.add(name: "Content-Length", value: String(length)) }
                    try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: h)))
                    if length > 0, let chunk {
                        // The body is `chunk` repeated (and cut) to `length` bytes.
                        var left = length
                        while left > 0 {
                            let n = min(left, chunk.readableBytes)
                            try await outbound.write(.body(.byteBuffer(chunk.getSlice(at: chunk.readerIndex, length: n)!)))
                            left -= n
                        }
                    }
                    try await outbound.write(.end(nil))
                    guard case .head(let head)? = try await responses.next() else { throw BenchError("the connection closed before an answer") }
                    var r = BenchResponse(status: Int(head.status.code), bytes: 0, body: "", close: !head.isKeepAlive)
                    let keepBody = wantBody || r.status >= 300
                    while true {
                        switch try await responses.next() {
                        case .body(let b)?:
                            r.bytes += b.readableBytes
                            if keepBody, r.body.utf8.count < keep { r.body += String(buffer: b) }
                        case .end?: return r
                        case .head?: throw BenchError("a second answer head before the end of the first")
                        case nil: throw BenchError("the connection closed inside an answer")
                        }
                    }
                })
        }
    }
}
