import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import S3

/// The S3 listener's NIO handlers on an `EmbeddedChannel`: parts in, parts out, no socket.
@Suite struct ChannelHandlerTests {
    static func head(_ expect: String?) -> HTTPRequestPart {
        var h = HTTPRequest(method: .put, scheme: "http", authority: "localhost", path: "/bkt/k")
        if let expect { h.headerFields[.expect] = expect }
        return .head(h)
    }

    @Test func continueIsAnsweredAtOnceAndTheHeaderRemoved() throws {
        let ch = EmbeddedChannel(handler: ExpectContinueHandler())
        try ch.writeInbound(Self.head("100-Continue"))
        let answered = try #require(try ch.readOutbound(as: HTTPResponsePart.self))
        guard case .head(let r) = answered else { Issue.record("expected a response head, got \(answered)"); return }
        #expect(r.status == .continue)
        guard case .head(let passed)? = try ch.readInbound(as: HTTPRequestPart.self) else { Issue.record("the request did not go on"); return }
        #expect(passed.headerFields[.expect] == nil)
        #expect(try ch.finish().isClean)
    }

    @Test func anotherExpectationGoesOnUnanswered() throws {
        let ch = EmbeddedChannel(handler: ExpectContinueHandler())
        try ch.writeInbound(Self.head("something-else"))
        #expect(try ch.readOutbound(as: HTTPResponsePart.self) == nil)
        guard case .head(let passed)? = try ch.readInbound(as: HTTPRequestPart.self) else { Issue.record("the request did not go on"); return }
        #expect(passed.headerFields[.expect] == "something-else")
        _ = try ch.finish()
    }

    /// Past the limit a connection gets one 503 SlowDown with Retry-After and is closed; its body
    /// is dropped; closing it frees its place for the next.
    @Test func connectionsPastTheLimitGetSlowDownAndClose() throws {
        let counter = ConnectionCounter(limit: 1)
        let first = EmbeddedChannel(handler: counter.handler())
        let second = EmbeddedChannel(handler: counter.handler())
        #expect(counter.refused.load(ordering: .relaxed) == 1)
        try first.writeInbound(Self.head(nil))
        #expect(try first.readInbound(as: HTTPRequestPart.self) != nil)  // within the limit: passed on

        try second.writeInbound(Self.head(nil))
        try second.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "dropped")))
        #expect(try second.readInbound(as: HTTPRequestPart.self) == nil)
        guard case .head(let r)? = try second.readOutbound(as: HTTPResponsePart.self) else { Issue.record("no response head"); return }
        #expect(r.status == .serviceUnavailable && r.headerFields[.retryAfter] == "1" && r.headerFields[.connection] == "close")
        guard case .body(let body)? = try second.readOutbound(as: HTTPResponsePart.self) else { Issue.record("no response body"); return }
        #expect(String(buffer: body).contains("<Code>SlowDown</Code>"))
        #expect(!second.isActive)

        _ = try first.finish()
        let third = EmbeddedChannel(handler: counter.handler())
        try third.writeInbound(Self.head(nil))
        #expect(try third.readInbound(as: HTTPRequestPart.self) != nil)  // the freed place
        #expect(counter.refused.load(ordering: .relaxed) == 1)
        _ = try third.finish()
    }
}
