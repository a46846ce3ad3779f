import Cluster
import Control
import Foundation
import Hummingbird
import Security

/// A token as `GET /v1/tokens` and `stacks token list` show it: never the secret or its hash.
public struct TokenView: Codable, Sendable, Equatable {
    public var id: String
    public var role: String
    public var createdMs: Int64
    public var expiresMs: Int64
    public var usesLeft: UInt32
    public var revoked: Bool
    enum CodingKeys: String, CodingKey {
        case id, role, revoked
        case createdMs = "created_ms", expiresMs = "expires_ms", usesLeft = "uses_left"
    }
    init(_ t: TokenRecord) {
        id = t.id; role = t.role; createdMs = t.createdMs; expiresMs = t.expiresMs; usesLeft = t.usesLeft; revoked = t.revoked
    }
}

/// One admission of the join audit (`GET /v1/joins`, `stacks token list --joins`).
public struct JoinView: Codable, Sendable, Equatable {
    public var node: String
    public var token: String
    public var role: String
    public var atMs: Int64
    public var publicKey: String
    enum CodingKeys: String, CodingKey {
        case node, token, role
        case atMs = "at_ms", publicKey = "public_key"
    }
    init(_ n: NodeRecord) { node = n.name; token = n.tokenID; role = n.role; atMs = n.joinedMs; publicKey = Base64.encode(n.publicKey) }
}

/// What `POST /v1/tokens` answers: the token itself appears here only.
public struct NewToken: Codable, Sendable {
    public var token: String
    public var id: String
    public var role: String
    public var expiresMs: Int64
    public var uses: UInt32
    enum CodingKeys: String, CodingKey {
        case token, id, role, uses
        case expiresMs = "expires_ms"
    }
}

struct TokenCreateRequest: Codable {
    var ttlSeconds: Int?
    var uses: Int?
    var role: String?
    enum CodingKeys: String, CodingKey {
        case uses, role
        case ttlSeconds = "ttl_seconds"
    }
}

/// `/v1/tokens` (create, list, revoke), `/v1/joins` (the audit) and `/v1/nodes/NAME/remove`.
enum TokenAPI {
    static let maxTTLSeconds = 366 * 86_400
    static let maxUses = 10_000

    static func add(to router: Router<BasicRequestContext>, raft: RaftService, join: JoinService) {
        router.post("/v1/tokens") { request, _ in
            let body = try await request.body.collect(upTo: 4096)
            guard let req = try? JSONDecoder().decode(TokenCreateRequest.self, from: Data(buffer: body)) else {
                return AdminAPI.problem(.badRequest, "body must be {\"ttl_seconds\": N, \"uses\": N, \"role\": \"storage|compute|all\"}")
            }
            let ttl = req.ttlSeconds ?? 3600, uses = req.uses ?? 1
            guard (1...maxTTLSeconds).contains(ttl) else { return AdminAPI.problem(.badRequest, "the ttl must be from 1 s to 366 days") }
            guard (1...maxUses).contains(uses) else { return AdminAPI.problem(.badRequest, "uses must be from 1 to \(maxUses)") }
            guard let role = NodeRole(rawValue: req.role ?? "all") else { return AdminAPI.problem(.badRequest, "the role must be storage, compute or all") }
            guard let fingerprint = join.authority.state.withLock({ $0.clusterKey?.fingerprint }) else {
                return AdminAPI.problem(.conflict, "this node has no cluster identity (it joined before join tokens): make tokens on a node that has")
            }
            let token = JoinToken.generate(fingerprint: fingerprint)
            let now = Int64(Date().timeIntervalSince1970 * 1000), expires = now + Int64(ttl) * 1000
            let record = TokenRecord(
                id: token.idText, secretHash: token.secretHash, role: role.rawValue, createdMs: now, expiresMs: expires, usesLeft: UInt32(uses))
            return try await AdminAPI.clusterCall {
                guard try await raft.submit(.createToken(record)) == .ok else { return AdminAPI.problem(.conflict, "token id collision; retry") }
                return try AdminAPI.json(NewToken(token: token.text, id: token.idText, role: role.rawValue, expiresMs: expires, uses: UInt32(uses)))
            }
        }
        router.get("/v1/tokens") { _, _ in
            try AdminAPI.json(raft.read { $0.tokens.values.sorted { ($0.createdMs, $0.id) < ($1.createdMs, $1.id) }.map(TokenView.init) })
        }
        router.delete("/v1/tokens/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            return try await AdminAPI.clusterCall {
                guard try await raft.submit(.revokeToken(id: id)) == .ok else { return AdminAPI.problem(.notFound, "no such token: \(id)") }
                return AdminAPI.ok()
            }
        }
        router.get("/v1/joins") { _, _ in try AdminAPI.json(raft.read { $0.joins.map(JoinView.init) }) }
        // `stacks node remove`: the node's credential is refused everywhere from the commit on,
        // then a new gossip key and a new secrets key go to every member but it (through the
        // Raft log, which no longer reaches it); with `rotate_keys`, new S3 secrets too.
        router.post("/v1/nodes/:name/remove") { request, context in
            let name = context.parameters.get("name") ?? ""
            let body = try await request.body.collect(upTo: 4096)
            let ask = body.readableBytes == 0 ? NodeRemoveRequest() : try? JSONDecoder().decode(NodeRemoveRequest.self, from: Data(buffer: body))
            guard let ask, (0...NodeRemoveRequest.maxGraceSeconds).contains(ask.graceSeconds ?? 0) else {
                return AdminAPI.problem(
                    .badRequest, "body must be {\"rotate_keys\": BOOL, \"grace_seconds\": 0...\(NodeRemoveRequest.maxGraceSeconds)}")
            }
            guard name != raft.name else { return AdminAPI.problem(.conflict, "a node cannot remove itself: run this on another member") }
            guard raft.read({ $0.nodes[name] }) != nil else {
                return AdminAPI.problem(.notFound, "no node named \(name) was admitted with a credential (see stacks token list --joins)")
            }
            return try await AdminAPI.clusterCall {
                // Removal and rotation are one step: asked again (after a lost answer, or a crash
                // between the two), it rotates again and finishes.
                let now: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
                let removed = try await raft.submit(.removeNode(name: name, atMs: now()))
                guard removed == .ok || raft.read({ $0.nodes[name]?.removedMs != nil }) else {
                    return AdminAPI.problem(.conflict, "\(name) cannot be removed (\(removed))")
                }
                guard try await raft.submit(.rotateGossipKey(Sodium.randomBytes(32))) == .ok else {
                    return AdminAPI.problem(.serviceUnavailable, "\(name) is removed, but the gossip key did not rotate; run it again")
                }
                let grace = ask.graceSeconds ?? NodeRemoveRequest.defaultGraceSeconds
                var answer = NodeRemoval(removed: name, already: removed != .ok, rotatedSecrets: false, graceSeconds: nil, keys: nil)
                let secrets = SecretsKeys(raft: raft, authority: join.authority)
                if secrets.current() != nil {
                    let keys = try await secrets.rotate(
                        newSecrets: ask.rotateKeys == true, graceMs: Int64(grace) * 1000, nowMs: now)
                    answer.rotatedSecrets = true
                    if ask.rotateKeys == true { (answer.keys, answer.graceSeconds) = (keys, grace) }
                }
                return try AdminAPI.json(answer)
            }
        }
    }
}

struct NodeRemoveRequest: Codable {
    /// Every S3 user gets a new secret (not the default: every client must be given it).
    var rotateKeys: Bool?
    /// How long the secrets clients held stay accepted after `rotate_keys`.
    var graceSeconds: Int?
    static let defaultGraceSeconds = 3600
    static let maxGraceSeconds = 30 * 86400
    enum CodingKeys: String, CodingKey {
        case rotateKeys = "rotate_keys"
        case graceSeconds = "grace_seconds"
    }
}

/// What `stacks node remove` did: the gossip key is always rotated, the secrets key whenever
/// the cluster has one, and with `rotate_keys` every S3 user's new secret is here, once.
public struct NodeRemoval: Codable, Sendable {
    public var removed: String
    public var already: Bool
    public var rotatedSecrets: Bool
    public var graceSeconds: Int?
    public var keys: [NewSecret]?
    enum CodingKeys: String, CodingKey {
        case removed, already, keys
        case rotatedSecrets = "rotated_secrets"
        case graceSeconds = "grace_seconds"
    }
}
