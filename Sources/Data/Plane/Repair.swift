import Coordinator
import DataRPC
import Erasure
import Synchronization

public enum RepairOutcome: Equatable, Sendable {
    /// The key's newest version (an object, or a delete marker) after the repair: shards written
    /// to the current slots' nodes that lacked theirs, and slots still without (their node
    /// silent, or the write failed).
    case checked(written: Int, missing: Int, marker: Bool)
    /// Another node holding the key comes first in its partition and repairs it.
    case notMine
    /// The key's delete marker, older than `PlaneSettings.markerGrace` and on every slot's
    /// node, was dropped with every version under it: the key is gone from the cluster.
    case purged
    /// The key has no version anywhere.
    case absent
    case failed(String)
}

/// Keys being repaired now, and how many may be at once (reads that found a node lacking
/// a shard ask for a repair; past the limit the next pass of the repairer gets it).
final class RepairQueue: Sendable {
    let inFlight = Mutex<Set<String>>([])
    static let limit = 8

    func begin(_ id: String) -> Bool {
        inFlight.withLock { s in
            guard s.count < Self.limit, !s.contains(id) else { return false }
            s.insert(id)
            return true
        }
    }

    func end(_ id: String) { _ = inFlight.withLock { $0.remove(id) } }

    var count: Int { inFlight.withLock { $0.count } }
}

/// One repair of a key at a time on this node (a read repair and the repairer's pass would
/// otherwise write the same shard to the same node at once, and both fail): the next waits.
final class KeyGate: Sendable {
    let state = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func enter(_ id: String) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                guard s[id] != nil else {
                    s[id] = []
                    return true
                }
                s[id]!.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func leave(_ id: String) {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard var waiting = s[id], !waiting.isEmpty else {
                s[id] = nil
                return nil
            }
            let c = waiting.removeFirst()
            s[id] = waiting
            return c
        }
        next?.resume()
    }
}

extension DataPlane {
    /// Read repairs under way now.
    public var repairsInFlight: Int { repairs.count }

    /// Repairs a key in the background (read repair), unless it is being repaired already.
    func scheduleRepair(bucket: String, key: String) {
        let id = bucket + "\u{0}" + key
        guard repairs.begin(id) else { return }
        Task {
            let outcome = await repair(bucket: bucket, key: key)
            if case .failed(let why) = outcome { logger.info("read repair failed", metadata: ["key": "\(key)", "why": "\(why)"]) }
            repairs.end(id)
        }
    }

    /// Brings a key's newest version back to a shard on every node of its partition that
    /// answers: each node lacking it gets its slot's shard, rebuilt from any k others (the
    /// stripes as stored are decoded and encoded again, so the new shard matches its siblings
    /// byte for byte), or the delete marker. With `onlyAs`, only the node holding the version
    /// at the lowest slot repairs, so that one node of many walking their keys does it.
    public func repair(bucket: String, key: String, onlyAs me: String? = nil) async -> RepairOutcome {
        let id = bucket + "\u{0}" + key
        await repairGate.enter(id)
        defer { repairGate.leave(id) }
        let p: Placed
        do { p = try placed(bucket, key) } catch { return .failed("\(error)") }
        let answers = await askHeld(bucket, key, p)
        func holds(_ node: String, _ v: ObjectVersion) -> Bool {
            if case .holds(let hs) = answers[node] { return hs.contains { $0.version == v } }
            return false
        }
        func mine(_ v: ObjectVersion) -> Bool { me == nil || p.consulted.first { holds($0.name, v) }?.name == me }
        let silent = p.nodes.filter { if case .holds = answers[$0.name] { false } else { true } }.count
        switch resolve(answers, p) {
        case .unavailable(let answered, let needed): return .failed("\(answered) nodes answered, \(needed) needed")
        case .inDoubt(let v): return .failed("version \(v) is in doubt")
        case .notFound(let lacking):
            var markers: [ObjectVersion] = []
            for case .holds(let hs) in answers.values { markers += hs.filter(\.deleted).map(\.version) }
            guard let marker = markers.max() else { return .absent }
            guard mine(marker) else { return .notMine }
            if me != nil, silent == 0, p.earlier.isEmpty, p.nodes.allSatisfy({ holds($0.name, marker) }),
                wallMs() - Int64(clamping: marker.time.ms) > settings.markerGrace.nanoseconds / 1_000_000
            {
                return await purge(bucket, key, marker, p, answers)
            }
            let meta = VersionMeta(
                size: 0, etag: "", contentType: "", lastModifiedMs: 0, userMetadata: [], checksums: [], k: p.k, m: p.m, blockSize: 1, stripes: 0,
                deleted: true)
            var done = 0
            for (i, n) in p.nodes.enumerated() where lacking.contains(n.name) {
                let ref = ShardRef(bucket: bucket, key: key, version: marker, shard: i, k: p.k, m: p.m, deleted: true)
                if (try? await write(ref, to: n, meta: meta.encoded())) != nil { done += 1 }
            }
            return .checked(written: done, missing: silent + lacking.count - done, marker: true)
        case .serve(let v, _, _):
            guard mine(v) else { return .notMine }
            let lacking = self.lacking(v, p, answers)
            guard !lacking.isEmpty else { return .checked(written: 0, missing: silent, marker: false) }
            do {
                let done = try await rebuild(bucket, key, v, p, answers, for: Set(lacking))
                return .checked(written: done, missing: silent + lacking.count - done, marker: false)
            } catch { return .failed("\(error)") }
        }
    }

    /// Drops a delete marker and every version under it from each slot's node: the versions
    /// under it first everywhere, then the markers, so that a purge cut short never leaves an
    /// older version newest anywhere (a marker left is written back to the others and purged
    /// on a later pass). Only when every slot's node holds the marker and nothing migrates: no
    /// node that answers reads can hold an older version then, and none newer is touched.
    func purge(_ bucket: String, _ key: String, _ marker: ObjectVersion, _ p: Placed, _ answers: [String: ShardAnswer]) async -> RepairOutcome {
        let timeout = client.requestTimeout
        for markers in [false, true] {
            for n in p.nodes {
                guard case .holds(let hs) = answers[n.name], let address = n.address else { return .failed("\(n.name) did not answer") }
                for h in hs where h.version <= marker && h.deleted == markers {
                    do {
                        let answer = try await client.withConnection(to: address, node: n.name) { c in
                            try await c.send(.revert(h.ref(bucket, key)))
                            return try await c.receive(timeout: timeout)
                        }
                        if case .error(let e) = answer, e.code != .notFound { return .failed("\(n.name) refused to drop \(h.version): \(e)") }
                    } catch {
                        return .failed("\(n.name): \(error)")
                    }
                }
            }
        }
        return .purged
    }

    /// Whether this node's shards `mine` of a key, placed here by an earlier layout, may go:
    /// the newest version is served, and each of `mine` of it is held by its slot's node now
    /// (older ones are superseded), or a delete marker at least as new as each is on a write
    /// quorum of the current slots, or no slot's node holds anything of the key while nothing
    /// migrates. Anything else (in doubt, unreadable, a slot's node silent) keeps them.
    public func movedAway(bucket: String, key: String, mine: [Held]) async -> Bool {
        guard let p = try? placed(bucket, key) else { return false }
        let answers = await askHeld(bucket, key, p)
        func holds(_ slot: Int, _ test: (Held) -> Bool) -> Bool {
            guard slot < p.nodes.count, case .holds(let hs) = answers[p.nodes[slot].name] else { return false }
            return hs.contains(where: test)
        }
        switch resolve(answers, p) {
        case .serve(let v, _, _):
            return mine.allSatisfy { h in h.version < v || (h.version == v && holds(h.shard) { $0.version == v && $0.shard == h.shard }) }
        case .notFound:
            // Every slot's node answered holding nothing, and nothing migrates: no acknowledged
            // version of the key is anywhere (a purged key, or an old copy left by a node that was
            // away while its data moved), so what this node keeps of it is garbage.
            let nothingOnSlots = p.earlier.isEmpty && p.nodes.allSatisfy { if case .holds(let hs) = answers[$0.name] { hs.isEmpty } else { false } }
            return nothingOnSlots
                || mine.allSatisfy { h in p.nodes.indices.filter { holds($0) { $0.deleted && $0.version >= h.version } }.count >= p.writeQuorum }
        default:
            return false
        }
    }

    /// Writes each lacking node its slot's shard of `v`, streaming all of them at once.
    func rebuild(
        _ bucket: String, _ key: String, _ v: ObjectVersion, _ p: Placed, _ answers: [String: ShardAnswer], for lacking: Set<String>
    ) async throws
        -> Int
    {
        let read = try await reader(bucket, key, v, p, answers)
        let meta = read.meta
        let code = try ReedSolomon(dataShards: meta.k, parityShards: meta.m)
        var targets: [(slot: Int, node: PlacedNode, link: DataConnection)] = []
        defer { for t in targets { t.link.close() } }
        for (i, n) in p.nodes.enumerated() where lacking.contains(n.name) && i < meta.k + meta.m {
            guard let address = n.address, let c = try? await client.connect(to: address, node: n.name) else { continue }
            do {
                try await c.send(.putShard(ShardRef(bucket: bucket, key: key, version: v, shard: i, k: meta.k, m: meta.m)))
                targets.append((i, n, c))
            } catch { c.close() }
        }
        if meta.stripes > 0 {
            try await read.forEachStripe(0, meta.stripes - 1) { _, header, headerBytes, shards in
                let stored = try code.decode(shards: shards, size: Int(header.storedLength))
                let all = code.encode(block: stored)
                var failed: [Int] = []
                for (t, target) in targets.enumerated() {
                    do { try await target.link.send(.stripe(header: headerBytes, bytes: all[target.slot])) } catch { failed.append(t) }
                }
                for t in failed.reversed() {
                    targets[t].link.close()
                    targets.remove(at: t)
                }
            }
        }
        var done = 0
        let timeout = client.requestTimeout
        for t in targets {
            do {
                try await t.link.send(.finish(meta: meta.encoded()))
                guard (try await t.link.receive(timeout: timeout)).isPrepared else { continue }
                try await t.link.send(.commit(ShardRef(bucket: bucket, key: key, version: v, shard: t.slot, k: meta.k, m: meta.m)))
                if try await t.link.receive(timeout: timeout) == .ok { done += 1 }
            } catch { continue }
        }
        return done
    }

    /// One shard with no stripes (a delete marker), prepared and committed on one node.
    func write(_ ref: ShardRef, to node: PlacedNode, meta: [UInt8]) async throws {
        guard let address = node.address else { throw PlaneError("\(node.name) has no known address") }
        let timeout = client.requestTimeout
        try await client.withConnection(to: address, node: node.name) { c in
            try await c.send(.putShard(ref))
            try await c.send(.finish(meta: meta))
            guard (try await c.receive(timeout: timeout)).isPrepared else { throw PlaneError("\(node.name) did not prepare") }
            try await c.send(.commit(ref))
            guard try await c.receive(timeout: timeout) == .ok else { throw PlaneError("\(node.name) did not commit") }
        }
    }
}
