import Cluster
import Control
import Foundation
import Gossip
import HTTPTypes
import Hummingbird
import Membership
import Security
import Telemetry

/// One member as the admin API and `stacks members` show it (JSON field names are the contract).
public struct MemberView: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var status: String
    public var incarnation: UInt64
    public var tags: [String: String]

    init(_ m: Member) {
        name = m.name; address = m.address; status = m.status.description; incarnation = m.incarnation.value; tags = m.tags
    }
}

public struct KeyringView: Codable, Sendable, Equatable {
    public var primary: String
    public var keys: [String]
    init(_ k: Keyring) { primary = Base64.encode(k.primary); keys = k.keys.map { Base64.encode($0) } }
}

struct KeyRequest: Codable { var key: String }
struct GossipJoinRequest: Codable { var seeds: [String] }
struct TagsRequest: Codable { var tags: [String: String] }

/// The change version a long poll waits past: sent on `/v1/status` and `/v1/members`.
let changeVersionHeader = HTTPField.Name("X-Stacks-Change")!

/// A view that can be watched: with `?since=V` the answer waits (up to `wait` seconds, default
/// 30, at most 60) until the change version passes V; every answer carries the version it shows.
func watched(_ request: Request, _ changes: ChangeFeed, _ view: () async throws -> Response) async throws -> Response {
    let q = request.uri.queryParameters
    if let since = q.get("since").flatMap({ UInt64($0) }) {
        let wait = min(60, max(0, q.get("wait").flatMap { Int($0) } ?? 30))
        _ = await changes.wait(since: since, timeout: .seconds(wait))
    }
    let version = changes.version  // read before the view, so a change made while it renders is not missed
    var response = try await view()
    response.headers[changeVersionHeader] = "\(version)"
    return response
}

/// The Prometheus scrape endpoint: `GET /metrics` in the text format, on a listener of its own
/// and without the admin token, so a Prometheus server can scrape it with no secret.
enum MetricsAPI {
    static func router(exporter: MetricsExporter) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: await exporter.exposition())))
        }
        return router
    }
}

/// The node's loopback admin API: HTTP + JSON, every request carrying `Authorization: Bearer
/// TOKEN` where TOKEN is in `DATA_DIR/admin` (mode 0600) together with the API's URL.
enum AdminAPI {
    static func router(gossip: GossipService, raft: RaftService, changes: ChangeFeed, token: String, join: JoinService? = nil) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: BearerToken(token: token))
        router.get("/v1/status") { request, _ in
            try await watched(request, changes) { try json(try await raft.status()) }
        }
        // Replicated key-value settings: writes go through the leader; `?consistent` reads too.
        router.put("/v1/kv/:key") { request, context in
            guard let key = context.parameters.get("key"), !key.isEmpty, key.utf8.count <= 255 else {
                return problem(.badRequest, "key must be 1-255 bytes")
            }
            let body = try await request.body.collect(upTo: 1 << 16)
            let id = request.headers[requestIDHeader].flatMap(RequestID.init(hex:)) ?? .random()
            return try await clusterCall {
                _ = try await raft.submit(.put(key: key, value: Array(body.readableBytesView)), id: id); return ok()
            }
        }
        router.delete("/v1/kv/:key") { request, context in
            let key = context.parameters.get("key") ?? ""
            let id = request.headers[requestIDHeader].flatMap(RequestID.init(hex:)) ?? .random()
            return try await clusterCall {
                let o = try await raft.submit(.delete(key: key), id: id)
                return o == .ok ? ok() : problem(.notFound, "no such key")
            }
        }
        router.get("/v1/kv/:key") { request, context in
            let key = context.parameters.get("key") ?? ""
            return try await clusterCall {
                if request.uri.queryParameters.has("consistent") { try await raft.linearizableBarrier() }
                guard let v = raft.read({ $0.values[key] }) else { return problem(.notFound, "no such key") }
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: v)))
            }
        }
        router.get("/v1/kv-stats") { _, _ in try json(["applied_commands": raft.read { $0.appliedCommands }, "keys": UInt64(raft.read { $0.values.count })]) }
        router.get("/v1/members") { request, _ in
            try await watched(request, changes) { try json(try await gossip.members().map(MemberView.init)) }
        }
        router.post("/v1/join") { request, _ in
            let body = try await request.body.collect(upTo: 65536)
            guard let req = try? JSONDecoder().decode(GossipJoinRequest.self, from: Data(buffer: body)), !req.seeds.isEmpty,
                req.seeds.allSatisfy({ ListenAddress($0) != nil })
            else {
                return problem(.badRequest, "body must be {\"seeds\": [\"host:port\", ...]}")
            }
            try await gossip.join(req.seeds)
            return try json(["joining": req.seeds])
        }
        router.post("/v1/tags") { request, _ in
            let body = try await request.body.collect(upTo: 65536)
            guard let req = try? JSONDecoder().decode(TagsRequest.self, from: Data(buffer: body)), req.tags.count <= GossipService.maxUserTags,
                req.tags.allSatisfy({ $0.key.utf8.count <= 255 && $0.value.utf8.count <= 255 && !$0.key.isEmpty })
            else {
                return problem(.badRequest, "body must be {\"tags\": {\"key\": \"value\"}} with at most \(GossipService.maxUserTags) tags of 255 bytes")
            }
            try await gossip.setTags(req.tags)
            return try json(req.tags)
        }
        LayoutAPI.add(to: router, raft: raft)
        if let join {
            TokenAPI.add(to: router, raft: raft, join: join)
            UserAPI.add(to: router, raft: raft, authority: join.authority)
        }
        router.get("/v1/keyring") { _, _ in try json(KeyringView(try await gossip.keys())) }
        let operations: [(String, @Sendable (inout Keyring, [UInt8]) throws -> Void)] = [
            ("install", { @Sendable k, key in k.install(key) }),
            ("use", { @Sendable k, key in try k.use(key) }),
            ("remove", { @Sendable k, key in try k.remove(key) }),
        ]
        for (op, apply) in operations {
            router.post("/v1/keyring/\(op)") { request, context in
                try await keyCall(request) { key in try json(KeyringView(try await gossip.changeKeyring { try apply(&$0, key) })) }
            }
        }
        // The same on every live member: through the Raft log on a cluster with node credentials
        // (KeyringLog.swift), else as gossip messages (KeyringQuery.swift): 200 with each
        // member's answer, 409 when `use`/`remove` would cut a member off (nothing changed).
        // 400 for a bad key.
        let byLog = join?.authority.state.withLock { $0.clusterKey != nil } ?? false
        router.get("/v1/cluster/keyring") { _, _ in
            try await clusterCall {
                try json(byLog ? try await KeyringLog.list(raft: raft, gossip: gossip) : try await gossip.keyringEverywhere(.list, key: []))
            }
        }
        for op in [KeyringOp.install, .use, .remove] {
            router.post("/v1/cluster/keyring/\(op.name)") { request, context in
                try await keyCall(request) { key in
                    try await clusterCall {
                        try json(
                            byLog
                                ? try await KeyringLog.change(op, key: key, raft: raft, gossip: gossip, changes: changes)
                                : try await gossip.keyringEverywhere(op, key: key))
                    }
                }
            }
        }
        return router
    }

    /// Reads `{"key": "BASE64"}` and maps keyring errors to 400 and refusals to 409.
    static func keyCall(_ request: Request, _ body: ([UInt8]) async throws -> Response) async throws -> Response {
        let data = try await request.body.collect(upTo: 4096)
        guard let req = try? JSONDecoder().decode(KeyRequest.self, from: Data(buffer: data)) else {
            return problem(.badRequest, "body must be {\"key\": \"BASE64\"}")
        }
        do {
            return try await body(try Keyring.parse(base64: req.key))
        } catch let e as Keyring.KeyringError {
            return problem(.badRequest, e.description)
        } catch let e as KeyringRefusal {
            return problem(.conflict, e.description)
        }
    }

    /// A client's id for a change: retrying with the same id never applies it twice.
    static let requestIDHeader = HTTPField.Name("X-Request-Id")!

    /// Maps "no leader" to 503 so clients know to retry.
    static func clusterCall(_ body: () async throws -> Response) async throws -> Response {
        do { return try await body() } catch let e as ClusterError {
            if case .forbidden = e { return problem(.forbidden, e.description) }
            return problem(.serviceUnavailable, e.description)
        } catch let e as SecretsKeys.Refusal {
            return problem(.conflict, e.description)
        }
    }

    /// `{"ok":true}`, without a JSON encoder on the write path.
    static func ok() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(staticString: "{\"ok\":true}")))
    }

    static func json(_ value: some Encodable) throws -> Response {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let data = try enc.encode(value)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = (try? JSONEncoder().encode(["error": message])) ?? Data()
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    struct BearerToken: RouterMiddleware {
        typealias Context = BasicRequestContext
        let expected: [UInt8]
        init(token: String) { expected = Array("Bearer \(token)".utf8) }
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let given = request.headers[.authorization] ?? ""
            guard Sodium.constantTimeEqual(Array(given.utf8), expected) else {
                return problem(.unauthorized, "missing or wrong admin token (see DATA_DIR/admin)")
            }
            return try await next(request, context)
        }
    }
}
