import Cluster
import Control
import Foundation
import Hummingbird
import Objects
import S3
import Security

/// An S3 user's key as `GET /v1/keys` and `stacks key list` show it: never the secret.
public struct UserView: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var admin: Bool
    public var bucket: String?
    public var allow: String
    public var createdMs: Int64
    enum CodingKeys: String, CodingKey {
        case id, name, admin, bucket, allow
        case createdMs = "created_ms"
    }
    init(_ u: UserKey) {
        id = u.id; name = u.name; admin = u.admin; bucket = u.bucket; createdMs = u.createdMs
        allow = u.admin || u.bucket == nil ? "all" : [u.allowRead ? "read" : nil, u.allowWrite ? "write" : nil].compactMap { $0 }.joined(separator: ",")
    }
}

struct UserCreateRequest: Codable {
    var name: String
    var bucket: String?
    var allow: String?
}

/// `/v1/keys`: S3 users (create shows the secret once; list never does; delete).
enum UserAPI {
    static func add(to router: Router<BasicRequestContext>, raft: RaftService, authority: NodeAuthority) {
        router.post("/v1/keys") { request, _ in
            let body = try await request.body.collect(upTo: 4096)
            guard let req = try? JSONDecoder().decode(UserCreateRequest.self, from: Data(buffer: body)), NodeConfig.isValidName(req.name) else {
                return AdminAPI.problem(
                    .badRequest, "body must be {\"name\": NAME, \"bucket\": B, \"allow\": \"read,write\"}; names are 1-64 letters, digits, '-', '_' or '.'")
            }
            let allow = Set((req.allow ?? "read,write").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            guard !allow.isEmpty, allow.isSubset(of: ["read", "write"]) else { return AdminAPI.problem(.badRequest, "allow must be read, write or read,write") }
            if let b = req.bucket, (try? ObjectStore.checkBucketName(b)) == nil { return AdminAPI.problem(.badRequest, "\(b) is not a valid bucket name") }
            if req.bucket == nil && req.allow != nil { return AdminAPI.problem(.badRequest, "allow goes with bucket") }
            let (id, secret) = AccessKeys.generate()
            return try await AdminAPI.clusterCall {
                let o = try await SecretsKeys(raft: raft, authority: authority).submitSealed { key, generation in
                    .putUser(
                        UserKey(
                            id: id, name: req.name, sealedSecret: try SecretsKeys.seal(secret, id: id, key: key),
                            createdMs: Int64(Date().timeIntervalSince1970 * 1000),
                            bucket: req.bucket, allowRead: allow.contains("read"), allowWrite: allow.contains("write"), keyGeneration: generation))
                }
                guard o == .ok else { return AdminAPI.problem(.conflict, "key id collision; retry") }
                return try AdminAPI.json(["id": id, "secret": secret, "name": req.name])
            }
        }
        router.get("/v1/keys") { _, _ in
            try AdminAPI.json(raft.read { $0.users.values.sorted { ($0.createdMs, $0.id) < ($1.createdMs, $1.id) }.map(UserView.init) })
        }
        router.delete("/v1/keys/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            return try await AdminAPI.clusterCall {
                guard try await raft.submit(.deleteUser(id: id)) == .ok else { return AdminAPI.problem(.notFound, "no such key: \(id)") }
                return AdminAPI.ok()
            }
        }
    }
}
