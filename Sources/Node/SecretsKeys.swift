import Cluster
import Control
import S3
import Security

/// A secret as `stacks node remove --rotate-keys` hands it out (once).
public struct NewSecret: Codable, Equatable, Sendable {
    public var id: String
    public var name: String
    public var secret: String
}

/// The key S3 users' secrets are sealed under in the cluster state: the state's own once a
/// removal rotated it, before that the one every member was given at join (`identity/`).
///
/// SigV4 is a shared secret: every node that serves S3 opens every user's secret, so a node
/// `stacks node remove` removed knew them all. Removal rotates the key (what is sealed from then
/// on opens only with the new one, which travels in the log the removed node no longer
/// receives); `--rotate-keys` also gives every user a new secret, the old one still accepted for
/// a grace, as cloud IAM key rotation works.
public struct SecretsKeys {
    let raft: RaftService
    let authority: NodeAuthority

    /// Why a rotation or a sealed change cannot go ahead (the admin API answers 409).
    struct Refusal: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The key new secrets are sealed under and its generation (nil: a cluster founded before
    /// join tokens, which has no S3 users).
    func current() -> (key: [UInt8], generation: UInt32)? {
        let (key, generation) = raft.read { ($0.secretsKey, $0.secretsGeneration) }
        guard let k = key ?? authority.state.withLock({ $0.secretsKey }) else { return nil }
        return (k, generation)
    }

    static func seal(_ secret: String, id: String, key: [UInt8]) throws -> [UInt8] {
        try Sodium.AEAD.seal(Array(secret.utf8), key: key, associatedData: Array(id.utf8))
    }

    public static func open(_ sealed: [UInt8], id: String, key: [UInt8]) -> String? {
        (try? Sodium.AEAD.open(sealed, key: key, associatedData: Array(id.utf8))).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The secrets a signature may be made with: the user's, and during a rotation's grace the
    /// one before it.
    func secrets(of u: UserKey, nowMs: Int64) -> [String] {
        guard let key = current()?.key, let secret = Self.open(u.sealedSecret, id: u.id, key: key) else { return [] }
        guard let p = u.previousSealed, nowMs < u.previousUntilMs, let previous = Self.open(p, id: u.id, key: key) else { return [secret] }
        return [secret, previous]
    }

    /// The rotation to propose now: a new key, every user's secret sealed again under it. With
    /// `newSecrets`, every user gets a new secret and the one clients hold stays accepted until
    /// `nowMs + graceMs` (after a rotation still in its grace, the oldest one, so a retried
    /// removal does not cut off clients that never saw the secrets it replaced).
    func rotation(newSecrets: Bool, graceMs: Int64, nowMs: Int64) throws(Refusal) -> (Command, [NewSecret]) {
        guard let (old, generation) = current() else { throw Refusal("this cluster has no secrets key (it was founded before join tokens)") }
        guard generation < .max else { throw Refusal("the secrets key was rotated \(generation) times; no more") }
        let key = Sodium.randomBytes(Sodium.AEAD.keyBytes)
        var rotated: [UserKey] = []
        var handed: [NewSecret] = []
        for var u in raft.read({ $0.users.values.sorted { $0.id < $1.id } }) {
            guard let secret = Self.open(u.sealedSecret, id: u.id, key: old) else {
                throw Refusal("the secret of key \(u.id) does not open with this node's secrets key")
            }
            let inGrace = u.previousSealed.flatMap { nowMs < u.previousUntilMs ? Self.open($0, id: u.id, key: old) : nil }
            do {
                if newSecrets {
                    let fresh = AccessKeys.generate().secret
                    u.sealedSecret = try Self.seal(fresh, id: u.id, key: key)
                    u.previousSealed = try Self.seal(inGrace ?? secret, id: u.id, key: key)
                    u.previousUntilMs = nowMs + graceMs
                    handed.append(NewSecret(id: u.id, name: u.name, secret: fresh))
                } else {
                    u.sealedSecret = try Self.seal(secret, id: u.id, key: key)
                    u.previousSealed = try inGrace.map { try Self.seal($0, id: u.id, key: key) }
                    if inGrace == nil { u.previousUntilMs = 0 }
                }
            } catch { throw Refusal("cannot seal: \(error)") }
            u.keyGeneration = generation + 1
            rotated.append(u)
        }
        return (.rotateSecrets(key: key, generation: generation + 1, users: rotated), handed)
    }

    /// Proposes a rotation, built again while a concurrent change (a user made meanwhile) makes
    /// it stale. Returns the new secrets (empty without `newSecrets`).
    func rotate(newSecrets: Bool, graceMs: Int64, nowMs: @Sendable () -> Int64) async throws -> [NewSecret] {
        for _ in 0..<5 {
            let (command, handed) = try rotation(newSecrets: newSecrets, graceMs: graceMs, nowMs: nowMs())
            switch try await raft.submit(command) {
            case .ok: return handed
            case .stale: try await raft.linearizableBarrier()
            case let o: throw Refusal("the secrets key rotation was refused (\(o))")
            }
        }
        throw Refusal("the secrets key rotation kept meeting concurrent changes; run it again")
    }

    /// Proposes a change sealed under the current key (a new user), built again if a rotation
    /// lands between the seal and the commit.
    func submitSealed(_ build: (_ key: [UInt8], _ generation: UInt32) throws -> Command) async throws -> Outcome {
        for _ in 0..<5 {
            guard let (key, generation) = current() else { throw Refusal("this cluster has no secrets key (it was founded before join tokens)") }
            let o = try await raft.submit(try build(key, generation))
            guard o == .stale else { return o }
            try await raft.linearizableBarrier()
        }
        throw Refusal("the secrets key kept changing; run it again")
    }
}
