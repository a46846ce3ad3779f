import Cluster
import Control
import DataRPC
import Foundation
import Gossip
import Logging
import Membership
import NIOCore
import Security
import Synchronization
import Telemetry

/// A member's end of `stacks join`, on its data port: proves the cluster key, checks the token
/// through the Raft log (`admitNode`) and, if admitted, signs the joiner's credential and hands
/// it the keyring and seeds. A member that does not hold the cluster's signing key sends the
/// joiner on to one that does. Every refusal is counted by reason and changes no cluster state.
final class JoinService: JoinDoor {
    static let joins = Series("stacks_joins_total", "Nodes this node admitted with a join token.")
    static let refusedSeries = Series("stacks_join_refused_total", "Join attempts this node refused, by reason.")
    static let reasons = [
        "expired", "used_up", "revoked", "wrong_secret", "unknown_token", "name_taken", "bad_request", "handshake", "unavailable", "rate_limited",
        "other_cluster",
    ]
    /// The gossip tag of members that sign credentials.
    static let signerTag = "signer"

    let raft: RaftService
    let gossip: GossipService
    let authority: NodeAuthority
    let logger: Logger
    let admitted: CoreMetrics.Counter
    let refusals: [String: CoreMetrics.Counter]
    let timeout = TimeAmount.seconds(10)
    /// Join attempts per source address.
    let attempts = Mutex(AttemptLimiter())

    init(raft: RaftService, gossip: GossipService, authority: NodeAuthority, metrics: Metrics, logger: Logger) {
        self.raft = raft; self.gossip = gossip; self.authority = authority; self.logger = logger
        admitted = metrics.counter(Self.joins)
        refusals = Dictionary(uniqueKeysWithValues: Self.reasons.map { ($0, metrics.counter(Self.refusedSeries, [("reason", $0)])) })
    }

    func update(_ i: NodeIdentity) { authority.state.withLock { $0 = i } }

    func refused(_ reason: String, _ message: String, _ remote: String) -> JoinAnswer {
        refusals[reason]?.increment()
        logger.warning("refused a join", metadata: ["from": "\(remote)", "reason": "\(message)"])
        return .refused(message)
    }

    func serveJoin(_ conn: DataConnection) async {
        var door = JoinDoorman(proof: authority.state.withLock { $0.proof }, ephemeral: Sodium.KeyExchange.keyPair())
        do {
            let hello = try await conn.receivePlain(timeout: timeout, maxBytes: JoinHandshake.maxMessageBytes)
            let proof = try door.proof(answering: hello)
            try await conn.sendPlain(proof)
            let sealed = try await conn.receivePlain(timeout: timeout, maxBytes: JoinHandshake.maxMessageBytes)
            if sealed == JoinHandshake.otherCluster {
                _ = refused("other_cluster", "a joiner whose token is for another cluster (or that dialled a member of another cluster)", conn.remote)
                return
            }
            let request: JoinRequest
            do { request = try door.request(sealed) } catch {
                try await conn.sendPlain(door.answer(refused("handshake", error.description, conn.remote)))
                return
            }
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
            guard attempts.withLock({ $0.allow(conn.remoteHost, nowMs: nowMs) }) else {
                let limit = "too many join attempts from \(conn.remoteHost); retry in a minute"
                return try await conn.sendPlain(door.answer(refused("rate_limited", limit, conn.remote)))
            }
            try await conn.sendPlain(door.answer(await decide(request, proves: { [door] in door.proves(request, secretHash: $0) }, from: conn.remote)))
        } catch {
            refusals["handshake"]?.increment()
            logger.info("a join handshake ended", metadata: ["from": "\(conn.remote)", "why": "\(error)"])
        }
    }

    /// `proves`: whether the request proves the secret whose hash is given (the doorman's check).
    func decide(_ req: JoinRequest, proves: ([UInt8]) -> Bool, from remote: String) async -> JoinAnswer {
        let (key, signs) = authority.state.withLock { ($0.clusterKey, $0.signs) }
        guard let key, signs else {
            let signers =
                (try? await gossip.members())?.filter { $0.status == .alive && $0.tags[Self.signerTag] == "1" }
                .compactMap { $0.tags[ClusterData.addressTag] } ?? []
            if signers.isEmpty { return refused("unavailable", "no live member can sign credentials now; retry later", remote) }
            return .redirect(signers)
        }
        guard NodeConfig.isValidName(req.name) else {
            return refused("bad_request", "the node name must be 1-64 letters, digits, '-', '_' or '.'", remote)
        }
        guard req.tokenID.count == JoinToken.idBytes, req.proof.count == JoinHandshake.proofBytes, req.publicKey.count == Sodium.Sign.publicKeyBytes
        else { return refused("bad_request", "malformed join request", remote) }
        // A live member of that name that the cluster did not admit with a key (it joined before tokens).
        if raft.read({ $0.nodes[req.name] }) == nil, (try? await gossip.members())?.contains(where: { $0.name == req.name && $0.status == .alive }) == true {
            return refused("name_taken", "a live member is already named \(req.name)", remote)
        }
        let id = req.tokenID.hex
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Checked on this replica first (after catching up with the leader, which writes nothing),
        // so a made-up or spent token never reaches the log; the log's check decides races. The
        // request proves the secret against the hash the token's record keeps ("" if it does not).
        var hash: [UInt8] = []
        func check() -> Outcome {
            raft.read { s in
                hash = s.tokens[id].map(\.secretHash).flatMap { proves($0) ? $0 : nil } ?? []
                return s.admission(tokenID: id, secretHash: hash, node: req.name, publicKey: req.publicKey, nowMs: now)
            }
        }
        var outcome = check()
        if outcome != .ok {
            try? await raft.linearizableBarrier()
            outcome = check()
        }
        if outcome == .ok {
            do {
                outcome = try await raft.submit(.admitNode(tokenID: id, secretHash: hash, node: req.name, publicKey: req.publicKey, nowMs: now))
            } catch {
                return refused("unavailable", "the cluster cannot commit the join now (\(error)); retry", remote)
            }
        }
        switch outcome {
        case .ok: break
        case .noSuchToken: return refused("unknown_token", "no such token (id \(id))", remote)
        case .wrongSecret: return refused("wrong_secret", "the token's secret is wrong", remote)
        case .tokenExpired: return refused("expired", "the token has expired", remote)
        case .tokenUsedUp: return refused("used_up", "the token has no uses left", remote)
        case .tokenRevoked: return refused("revoked", "the token was revoked", remote)
        case .nodeExists: return refused("name_taken", "another node is already named \(req.name)", remote)
        default: return refused("unavailable", "unexpected outcome \(outcome)", remote)
        }
        let (clusterID, record, granted) = raft.read { s in
            (s.clusterID, s.nodes[req.name], s.nodes.values.filter { $0.removedMs == nil }.map { GrantedMember(name: $0.name, publicKey: $0.publicKey) })
        }
        guard let record, let role = NodeRole(rawValue: record.role),
            let cred = key.issue(clusterID: clusterID, node: req.name, publicKey: req.publicKey, role: role, issuedMs: record.joinedMs)
        else { return refused("unavailable", "cannot sign the credential", remote) }
        let keyring: Keyring, members: [Member]
        do {
            keyring = try await gossip.keys()
            members = try await gossip.members()
        } catch { return refused("unavailable", "gossip is not running", remote) }
        admitted.increment()
        logger.info("admitted a node", metadata: ["node": "\(req.name)", "token": "\(id)", "from": "\(remote)"])
        return .accepted(
            JoinGrant(
                clusterID: clusterID, clusterKey: key.publicKey, credential: cred, keyring: keyring.keys,
                seeds: members.filter { $0.status == .alive }.map(\.address).prefix(16).map { $0 },
                secretsKey: SecretsKeys(raft: raft, authority: authority).current()?.key ?? [],
                // Every node of role all signs credentials too, so any of them admits joiners.
                signingKey: role == .all ? key.secretKey ?? [] : [], members: Array(granted.prefix(GrantedMember.maxCount))))
    }
}
