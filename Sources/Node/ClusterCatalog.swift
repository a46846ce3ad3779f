import Cluster
import Control
import Membership
import Objects
import S3

/// Buckets and access keys live in the replicated cluster state; this node's store mirrors
/// the buckets (a bucket made through one node exists on all of them).
struct ClusterCatalog: BucketCatalog, CredentialStore {
    let raft: RaftService
    let store: ObjectStore
    let clock: @Sendable () -> Int64

    func createBucket(_ name: String, scheme: String?) async throws {
        try ObjectStore.checkBucketName(name)
        let own = try scheme.flatMap(checkScheme)
        switch try await submit(.createBucket(name: name, createdMs: clock(), scheme: own)) {
        case .bucketExists: throw ObjectError.bucketAlreadyOwnedByYou(name)
        default: break
        }
    }

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

    func secret(forAccessKey id: String) -> String? { raft.read { $0.accessKeys[id] } }

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
        case .createBucket(let name, let ms, _):
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
