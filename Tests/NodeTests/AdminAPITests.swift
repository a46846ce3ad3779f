import Foundation
import HTTPTypes
import Hummingbird
import InProcessHTTP
import Logging
import Testing

@testable import Control
@testable import Membership
@testable import Node

/// The admin API's router in process, on a gossip service and a Raft service that are built but
/// not running (nothing commits): the token, input checks, views and the long poll, in
/// milliseconds. What needs a running cluster stays in the pytest suite.
@Suite struct AdminAPITests {
    struct Node {
        let dir: String
        let changes = ChangeFeed()
        let responder: any HTTPResponder<BasicRequestContext>
        static let token = "t0k3n"

        init() throws {
            dir = try Fixtures.temporaryDirectory("admin-api")
            let keyring = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
            let gossip = Fixtures.idleGossip(in: dir, keyring: keyring)
            let settings = RaftServiceSettings()
            let raft = try RaftService(
                name: "a", directory: "\(dir)/raft", listen: ListenAddress("127.0.0.1:2")!, bootstrap: true,
                gossip: gossip, keyring: keyring, settings: settings, logger: Logger(label: "test"),
                onApply: { _, _ in }, onRestore: { _ in })
            responder = AdminAPI.router(gossip: gossip, raft: raft, changes: changes, token: Self.token).buildResponder()
        }

        func send(_ method: HTTPRequest.Method, _ path: String, body: String = "", token: String? = Node.token) async throws -> InProcessHTTP.Reply {
            var h = HTTPFields()
            if let token { h[.authorization] = "Bearer \(token)" }
            return try await InProcessHTTP.send(responder, method, path, headers: h, body: Array(body.utf8))
        }
    }

    @Test func everyRouteWantsTheToken() async throws {
        let n = try Node()
        defer { try? FileManager.default.removeItem(atPath: n.dir) }
        for path in ["/v1/status", "/v1/members", "/v1/keyring", "/v1/kv/x"] {
            #expect(try await n.send(.get, path, token: nil).status == 401, "\(path) without a token")
            #expect(try await n.send(.get, path, token: "wrong").status == 401, "\(path) with a wrong token")
        }
    }

    @Test func badInputGetsAClearErrorAndChangesNothing() async throws {
        let n = try Node()
        defer { try? FileManager.default.removeItem(atPath: n.dir) }
        let long = String(repeating: "k", count: 256)
        let key = try await n.send(.put, "/v1/kv/\(long)", body: "v")
        #expect(key.status == 400 && key.text.contains("key must be 1-255 bytes"))
        let join = try await n.send(.post, "/v1/join", body: "{\"seeds\": [\"no-port\"]}")
        #expect(join.status == 400 && join.text.contains("host:port"))
        let tags = try await n.send(.post, "/v1/tags", body: "not json")
        #expect(tags.status == 400)
        let keyring = try await n.send(.post, "/v1/keyring/install", body: "{\"key\": \"short\"}")
        #expect(keyring.status == 400)
        let members = try await n.send(.get, "/v1/members")
        #expect(members.status == 200)
        let view = try JSONDecoder().decode([MemberView].self, from: Data(members.body))
        // No tag but the node's own keyring tag (key fingerprints): the bad `tags` body set none.
        #expect(view.map(\.name) == ["a"] && Array(view[0].tags.keys) == [GossipService.keyringTag])
    }

    /// The long poll waits while nothing changes and answers as soon as something does.
    @Test func membersLongPollWaitsForAChange() async throws {
        let n = try Node()
        defer { try? FileManager.default.removeItem(atPath: n.dir) }
        let first = try await n.send(.get, "/v1/members")
        let v = try #require(first.header("X-Stacks-Change").flatMap(UInt64.init))
        #expect(try await n.send(.get, "/v1/members?since=\(v)&wait=0").header("X-Stacks-Change") == "\(v)")
        async let waited = n.send(.get, "/v1/members?since=\(v)&wait=30")
        // Bump once the poll waits (bounded: the poll registers within moments).
        for _ in 0..<2_000 where n.changes.waiting == 0 { try await Task.sleep(for: .milliseconds(1)) }
        #expect(n.changes.waiting == 1)
        n.changes.bump()
        let answer = try await waited
        #expect(answer.status == 200 && answer.header("X-Stacks-Change") == "\(v + 1)")
    }
}
