import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Node

/// The CLI's client for the node's loopback admin API: one request per connection on SwiftNIO's
/// HTTP/1.1 codec (already built for the server side). The node is found through `DATA_DIR/admin`.
struct AdminClient {
    let host: String
    let port: Int
    let token: String

    init(dataDir: String) throws {
        let file: AdminFile
        do { file = try AdminFile.load(path: "\(dataDir)/admin") } catch {
            throw CLIError("no running node found in \(dataDir): \(dataDir)/admin is missing (is `stacks agent` running with this data dir?)")
        }
        guard let rest = file.url.split(separator: "//").last, let colon = rest.lastIndex(of: ":"),
            let port = Int(rest[rest.index(after: colon)...])
        else { throw CLIError("bad url in \(dataDir)/admin: \(file.url)") }
        host = String(rest[..<colon]); self.port = port; token = file.token
    }

    /// Sends a request and returns (status, body).
    func request(_ method: String, _ path: String, body: Data? = nil) throws -> (Int, Data) {
        let (status, _, payload) = try exchange(method, path, body: body, waitSeconds: 0)
        return (status, payload)
    }

    /// A view that can be watched (`/v1/status`, `/v1/members`): its body and the change version
    /// it shows. With `since`, the node answers once the version has passed it, or after `wait` s.
    func view(_ path: String, since: UInt64?, wait: Int) throws -> (Data, UInt64?) {
        let query = since.map { "\(path.contains("?") ? "&" : "?")since=\($0)&wait=\(wait)" } ?? ""
        let (status, headers, body) = try exchange("GET", path + query, body: nil, waitSeconds: since == nil ? 0 : wait)
        guard status == 200 else { throw Self.failure(status, body) }
        return (body, headers.first(name: "X-Stacks-Change").flatMap { UInt64($0) })
    }

    /// One request on its own connection over SwiftNIO's HTTP/1.1 client codec: (status, headers,
    /// body). Waits `waitSeconds` longer than the usual 10 s for the answer (a long poll).
    private func exchange(_ method: String, _ path: String, body: Data?, waitSeconds: Int) throws -> (Int, HTTPHeaders, Data) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let answer = loop.makePromise(of: ResponseCollector.Answer.self)
        let channel: any Channel
        do {
            channel = try ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHTTPClientHandlers()
                        try ch.pipeline.syncOperations.addHandler(ResponseCollector(answer))
                    }
                }
                .connect(host: host, port: port).wait()
        } catch {
            answer.fail(error)
            throw CLIError("cannot reach the node's admin API at \(host):\(port): \(error)")
        }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Authorization", value: "Bearer \(token)")
        head.headers.add(name: "Connection", value: "close")
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: "\(body.count)")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeout = loop.scheduleTask(in: .seconds(Int64(10 + waitSeconds))) {
            answer.fail(CLIError("the admin API at \(host):\(port) did not answer in \(10 + waitSeconds) s"))
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        let a = try answer.futureResult.wait()
        return (Int(a.head.status.code), a.head.headers, Data(a.body.readableBytesView))
    }

    func get<T: Decodable>(_ path: String, as: T.Type) throws -> T {
        let (status, body) = try request("GET", path)
        return try decode(status, body)
    }

    func post<T: Decodable>(_ path: String, json: some Encodable, as: T.Type) throws -> T {
        let (status, body) = try request("POST", path, body: try JSONEncoder().encode(json))
        return try decode(status, body)
    }

    private func decode<T: Decodable>(_ status: Int, _ body: Data) throws -> T {
        guard status == 200 else { throw Self.failure(status, body) }
        return try JSONDecoder().decode(T.self, from: body)
    }

    /// An answer other than 200, with the API's `{"error": ...}` message when it sent one.
    private static func failure(_ status: Int, _ body: Data) -> CLIError {
        let message = (try? JSONDecoder().decode([String: String].self, from: body))?["error"] ?? String(decoding: body, as: UTF8.self)
        return CLIError("admin API answered \(status): \(message)")
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Gathers one response (head and whole body) and completes the promise when it ends, or fails it
/// when the connection closes or errs first.
final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    struct Answer: Sendable {
        var head: HTTPResponseHead
        var body: ByteBuffer
    }
    let promise: EventLoopPromise<Answer>
    var head: HTTPResponseHead?
    var body = ByteBuffer()
    /// The admin API's answers are small JSON; a larger one is refused, not held.
    static let maxBody = 16 << 20

    init(_ promise: EventLoopPromise<Answer>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body(var b):
            guard body.readableBytes + b.readableBytes <= Self.maxBody else {
                promise.fail(CLIError("the admin API's answer is over \(Self.maxBody) bytes"))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&b)
        case .end:
            if let head { promise.succeed(Answer(head: head, body: body)) } else { promise.fail(CLIError("malformed admin API response")) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(CLIError("the admin API closed the connection without an answer"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
