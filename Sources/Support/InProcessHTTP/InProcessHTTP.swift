import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded

/// Drives a Hummingbird responder in process, as Hummingbird's testing module does with a
/// router: the request goes straight to `respond(to:context:)` on a context over an
/// `EmbeddedChannel`, and the response body is collected; no socket, no server (tests only).
public enum InProcessHTTP {
    public struct Reply: Sendable {
        public var status: Int
        public var headers: HTTPFields
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }
    }

    struct Collector: ResponseBodyWriter {
        final class Sink: @unchecked Sendable { var bytes: [UInt8] = [] }  // one writer at a time
        let sink = Sink()
        mutating func write(_ buffer: ByteBuffer) async throws { sink.bytes += Array(buffer.readableBytesView) }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    public static func send<R: HTTPResponder>(
        _ responder: R, _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:], body: [UInt8] = [],
        authority: String = "localhost"
    ) async throws -> Reply where R.Context == BasicRequestContext {
        var fields = headers
        fields[.contentLength] = "\(body.count)"
        let request = Request(
            head: HTTPRequest(method: method, scheme: "http", authority: authority, path: path, headerFields: fields),
            body: RequestBody(buffer: ByteBuffer(bytes: body)))
        let context = BasicRequestContext(source: ApplicationRequestContextSource(channel: EmbeddedChannel(), logger: Logger(label: "in-process")))
        let response = try await responder.respond(to: request, context: context)
        let writer = Collector()
        try await response.body.write(writer)
        return Reply(status: Int(response.status.code), headers: response.headers, body: writer.sink.bytes)
    }
}
