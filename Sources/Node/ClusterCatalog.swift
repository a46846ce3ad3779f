import Cluster
import Control
import Membership
import Objects
import S3
import Security

/// Buckets and access keys live in the replicated cluster state; this node's store mirrors
/// the buckets (a bucket made through one node exists on all of them).
///
/// Rights: a key of the credentials file from before S3 users, or an admin user's (the founding
/// node's), may do everything; a user may do everything with the buckets it created and
/// nothing with others'; a user made for one bucket may do only what it was allowed there.
struct ClusterCatalog: BucketCatalog, CredentialStore {
    let raft: RaftService
    let store: ObjectStore
    let clock: @Sendable () -> Int64
    let authority: NodeAuthority

    func createBucket(_ name: String, scheme: String?, owner: String) async throws {
        try ObjectStore.checkBucketName(name)
        let own = try scheme.flatMap(checkScheme)
        let isUser = raft.read { $0.users[owner] != nil }
        let command: Command =
            isUser
            ? .createOwnedBucket(name: name, createdMs: clock(), scheme: own, owner: owner) : .createBucket(name: name, createdMs: clock(), scheme: own)
        switch try await submit(command) {
        case .bucketExists:
            let holder = raft.read { $0.buckets[name]?.owner } ?? ""
            guard holder == (isUser ? owner : "") else {
                throw S3Error(
                    409, "BucketAlreadyExists", "The requested bucket name is not available. The bucket namespace is shared by all users of the system.")
            }
            throw ObjectError.bucketAlreadyOwnedByYou(name)
        default: break
        }
    }

    /// Nobody, admins included, has rights on a bucket that does not exist (the caller answers
    /// 404): names the cluster state does not hold, internal ones among them, open nothing.
    func rights(of accessKey: String, on bucket: String) -> BucketRights {
        raft.read { s in
            guard let b = s.buckets[bucket] else { return [] }
            guard let u = s.users[accessKey], !u.admin else { return .all }
            if let only = u.bucket {
                guard only == bucket else { return [] }
                return BucketRights().union(u.allowRead ? .read : []).union(u.allowWrite ? .write : [])
            }
            return b.owner == accessKey ? .all : []
        }
    }

    func bucketExists(_ bucket: String) -> Bool { raft.read { $0.buckets[bucket] != nil } }

    func mayCreateBuckets(_ accessKey: String) -> Bool { raft.read { $0.users[accessKey]?.bucket == nil } }

    func owner(of bucket: String) -> BucketOwner {
        raft.read { s in s.buckets[bucket].flatMap { s.users[$0.owner] }.map { BucketOwner(id: $0.id, name: $0.name) } } ?? .stacks
    }

    func user(_ accessKey: String) -> BucketOwner {
        raft.read { $0.users[accessKey] }.map { BucketOwner(id: $0.id, name: $0.name) } ?? .stacks
    }

    var secretsKeys: SecretsKeys { SecretsKeys(raft: raft, authority: authority) }

    /// A bucket's own scheme from `x-stacks-scheme`: nil for auto; refused when the layout has
    /// fewer storage nodes than its width (each shard needs a node of its own).
    func checkScheme(_ text: String) throws -> ErasureScheme? {
        guard let request = SchemeRequest(parsing: text) else { throw S3Error.invalidArgument("x-stacks-scheme must be \(SchemeRequest.syntax); got \(text)") }
        guard case .fixed(let s) = request else { return nil }
        let width = raft.read { $0.layout.scheme.width }
        guard s.width <= max(width, 1) else {
            throw S3Error.invalidArgument("x-stacks-scheme \(s) needs \(s.width) storage nodes; the layout places \(width) shards per object")
        }
        return s
    }

    func deleteBucket(_ name: String) async throws {
        guard raft.read({ $0.buckets[name] != nil }) else { throw ObjectError.noSuchBucket(name) }
        // Objects are still stored where they were written, so this node can only vouch for itself.
        try store.checkDeletable(name)
        if try await submit(.deleteBucket(name: name)) == .noSuchBucket { throw ObjectError.noSuchBucket(name) }
    }

    func secret(forAccessKey id: String) -> String? { secrets(forAccessKey: id).first }

    /// The user's secret, and during a rotation's grace the one before it.
    func secrets(forAccessKey id: String) -> [String] {
        let (plain, user) = raft.read { ($0.accessKeys[id], $0.users[id]) }
        if let plain { return [plain] }
        return user.map { secretsKeys.secrets(of: $0, nowMs: clock()) } ?? []
    }

    /// An admin key a node can hand its local clients (`DATA_DIR/env`): a plain one from before
    /// S3 users, or the first admin user's.
    func someAdminKey() -> (id: String, secret: String)? {
        let (plain, admins) = raft.read { s in (s.accessKeys.sorted { $0.key < $1.key }.first, s.users.values.filter(\.admin).sorted { $0.id < $1.id }) }
        if let p = plain { return (p.key, p.value) }
        for u in admins { if let s = secretsKeys.secrets(of: u, nowMs: clock()).first { return (u.id, s) } }
        return nil
    }

    private func submit(_ c: Command) async throws -> Outcome {
        do { return try await raft.submit(c) } catch let e as ClusterError {
            if case .busy = e { throw S3Error(503, "SlowDown", "\(e.description); reduce your request rate") }
            throw S3Error(503, "ServiceUnavailable", "\(e.description); retry shortly")
        }
    }

    /// Mirrors an applied command into the local store (runs on every node, in log order).
    static func mirror(_ c: Command, _ o: Outcome, store: ObjectStore, logger: @Sendable (String) -> Void) {
        guard o == .ok else { return }
        switch c {
        case .createBucket(let name, let ms, _), .createOwnedBucket(let name, let ms, _, _):
            do { try store.createBucket(name, createdMs: ms) } catch .bucketAlreadyOwnedByYou {} catch {
                logger("cannot create bucket \(name) locally: \(error)")
            }
        case .deleteBucket(let name):
            do { try store.deleteBucket(name) } catch .noSuchBucket {} catch { logger("bucket \(name) deleted in the cluster but kept here: \(error)") }
        default: break
        }
    }

    /// After a snapshot: the local store gets exactly the cluster's buckets (non-empty extras stay).
    static func reconcile(_ state: ClusterState, store: ObjectStore, logger: @Sendable (String) -> Void) {
        for b in state.buckets.values { mirror(.createBucket(name: b.name, createdMs: b.createdMs), .ok, store: store, logger: logger) }
        for b in store.listBuckets() where state.buckets[b.name] == nil { mirror(.deleteBucket(name: b.name), .ok, store: store, logger: logger) }
    }
}
