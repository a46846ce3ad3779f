import Cluster
import Control
import Gossip
import Membership
import Security

/// `stacks keyring` on a cluster with node credentials: the whole ring goes through the Raft
/// log (`setGossipKeyring`), which reaches members only, and every member adopts it on applying
/// (a member that was down catches up from the log). No keyring message travels over gossip:
/// members drop them there, so a key in the ring (a removed node keeps the old one for a
/// rotation's grace) neither changes a ring nor reads one. What each member holds is read from
/// its keyring tag (fingerprints, never keys), for the same checks and answers as Serf's
/// `keys` command: `use` needs every live member to hold the key, `remove` none to seal with it.
enum KeyringLog {
    /// How long a check (use, remove) or a change waits for every live member's tag to show it.
    static let settle = Duration.seconds(3)

    /// The ring the state holds, or before any change went through the log this node's own.
    static func current(raft: RaftService, local: Keyring) -> (version: UInt32, ring: Keyring) {
        let (version, primary, keys) = raft.read { ($0.gossipKeyringVersion, $0.gossipKey, $0.gossipKeys) }
        guard let primary, var ring = try? Keyring(primary: primary) else { return (version, local) }
        for k in keys { ring.install(k) }
        return (version, ring)
    }

    /// Checks `use` and `remove` against the members' rings, applies `op` to the cluster's ring
    /// and commits the result, then answers which live members show it within `settle`. A change another operator committed meanwhile makes
    /// it build again; keyring errors (a key not installed, removing the primary) come back as
    /// they are.
    static func change(_ op: KeyringOp, key: [UInt8], raft: RaftService, gossip: GossipService, changes: ChangeFeed) async throws -> KeyringRollout {
        let fp = GossipService.fingerprint(key)
        switch op {
        case .use:
            let before = try await view(until: { $0.contains(fp) }, gossip: gossip, changes: changes)
            let holding = before.values.filter { $0?.contains(fp) == true }.count
            guard holding == before.count else {
                throw KeyringRefusal(description: "only \(holding) of \(before.count) members hold that key: install it first; nothing changed")
            }
        case .remove:
            let before = try await view(until: { $0.first != fp }, gossip: gossip, changes: changes)
            let sealing = before.values.filter { $0?.first == fp }.count
            guard sealing == 0 else {
                throw KeyringRefusal(description: "\(sealing) of \(before.count) members still seal with that key: use another key first; nothing changed")
            }
        case .list, .install: break
        }
        try await commit(op, key: key, raft: raft, gossip: gossip)
        let done: ([String]) -> Bool =
            switch op {
            case .list: { _ in true }
            case .install: { $0.contains(fp) }
            case .use: { $0.first == fp }
            case .remove: { !$0.contains(fp) }
            }
        let after = try await view(until: done, gossip: gossip, changes: changes)
        return rollout(op, after, known: current(raft: raft, local: try await gossip.keys()).ring.keys, done: done)
    }

    /// The live members' rings once every one satisfies `ok`, or as they are after `settle`:
    /// this node hears of a change a moment after the member made it (a `use` just answered
    /// through another node, say). A peer's tag changing bumps `changes` (a gossip update
    /// event): that is what it waits on. This node's own tag raises no event, so each wait is
    /// also cut at 250 ms to look again.
    static func view(until ok: ([String]) -> Bool, gossip: GossipService, changes: ChangeFeed) async throws -> [String: [String]?] {
        let deadline = ContinuousClock.now + settle
        while true {
            let seen = changes.version
            let v = rings(try await gossip.members())
            if v.values.allSatisfy({ $0.map(ok) == true }) || ContinuousClock.now >= deadline { return v }
            _ = await changes.wait(since: seen, timeout: min(deadline - ContinuousClock.now, .milliseconds(250)))
        }
    }

    static func list(raft: RaftService, gossip: GossipService) async throws -> KeyringRollout {
        let local = try await gossip.keys()
        return rollout(.list, rings(try await gossip.members()), known: local.keys + current(raft: raft, local: local).ring.keys, done: { _ in true })
    }

    static func commit(_ op: KeyringOp, key: [UInt8], raft: RaftService, gossip: GossipService) async throws {
        for _ in 0..<5 {
            var (version, ring) = current(raft: raft, local: try await gossip.keys())
            let before = ring
            switch op {
            case .list: break
            case .install: ring.install(key)
            case .use: try ring.use(key)
            case .remove: try ring.remove(key)
            }
            guard ring.keys.count <= ClusterState.maxGossipKeys else {
                throw KeyringRefusal(description: "a ring holds at most \(ClusterState.maxGossipKeys) keys: remove one first; nothing changed")
            }
            if ring == before { return }
            switch try await raft.submit(.setGossipKeyring(version: version &+ 1, primary: ring.primary, keys: ring.keys)) {
            case .ok: return
            case .stale: try await raft.linearizableBarrier()
            case let o: throw KeyringRefusal(description: "the cluster refused the keyring change (\(o)); nothing changed")
            }
        }
        throw KeyringRefusal(description: "the keyring kept changing under this change; run it again")
    }

    /// Each live (or suspect) member's fingerprints, primary first; nil where it shows no keyring tag.
    static func rings(_ members: [Member]) -> [String: [String]?] {
        var out: [String: [String]?] = [:]
        for m in members where m.status == .alive || m.status == .suspect {
            out[m.name] = m.tags[GossipService.keyringTag].map { $0.split(separator: ",").map(String.init) }
        }
        return out
    }

    /// The answer `stacks keyring` prints: members whose ring shows the change (`done`) are ok,
    /// the others have not applied it yet; every key they hold with how many hold and seal with
    /// it, by its base64 where this node knows it, else by fingerprint.
    static func rollout(_ op: KeyringOp, _ view: [String: [String]?], known: [[UInt8]], done: ([String]) -> Bool) -> KeyringRollout {
        let names = Dictionary(known.map { (GossipService.fingerprint($0), Base64.encode($0)) }, uniquingKeysWith: { a, _ in a })
        var counts: [String: (nodes: Int, primary: Int)] = [:]
        var order: [String] = []
        for (_, fps) in view.sorted(by: { $0.key < $1.key }) {
            for (i, fp) in (fps ?? []).enumerated() {
                if counts[fp] == nil { order.append(fp) }
                counts[fp, default: (0, 0)].nodes += 1
                if i == 0 { counts[fp, default: (0, 0)].primary += 1 }
            }
        }
        let ok = view.filter { $0.value.map(done) == true }.keys.sorted()
        return KeyringRollout(
            op: op.name, nodes: view.count, ok: ok, noReply: view.keys.filter { !ok.contains($0) }.sorted(),
            keys: order.map { .init(key: names[$0] ?? "fingerprint:\($0)", nodes: counts[$0]!.nodes, primary: counts[$0]!.primary) })
    }
}
