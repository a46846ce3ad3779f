import Coordinator
import DataRPC
import Determinism
import Erasure
import Logging
import NIOCore
import Objects
import Synchronization

/// A node of a key's partition, as the layout names it, and where its data server listens
/// (nil while gossip has not told us).
public struct PlacedNode: Sendable, Equatable {
    public var name: String
    public var address: String?
    public init(name: String, address: String?) { self.name = name; self.address = address }
}

/// A key's place in the current layout: its scheme, and the node of each shard slot.
public struct Placed: Sendable, Equatable {
    public var k: Int
    public var m: Int
    /// `nodes[i]` holds shard i.
    public var nodes: [PlacedNode]
    /// The layout version.
    public var version: UInt64
    /// Nodes that held slots of the key's partition in earlier layout versions, still consulted
    /// while data moves, and hold none now: reads ask them too, writes go to `nodes` only.
    public var earlier: [PlacedNode]
    public init(k: Int, m: Int, nodes: [PlacedNode], version: UInt64 = 0, earlier: [PlacedNode] = []) {
        self.k = k; self.m = m; self.nodes = nodes; self.version = version; self.earlier = earlier
    }
    /// Every node asked on a read: the slots' nodes, then the earlier ones.
    public var consulted: [PlacedNode] { nodes + earlier }
    /// Acknowledged writes reach k+1 nodes, except that one node may always be down where
    /// there is parity (2+1 and 1+1 write to k, as MinIO does for k ≠ m; repair restores the rest).
    public var writeQuorum: Int { min(k + 1, max(k, nodes.count - 1)) }
    /// Enough answers that one of them saw any acknowledged write.
    public var readQuorum: Int { nodes.count - writeQuorum + 1 }
}

/// Where keys live (the replicated layout, with addresses from gossip).
public protocol PlacementMap: Sendable {
    /// nil while the cluster keeps objects on the node that took them (a layout of one node
    /// that never had more); throws while objects spread but the layout is not known yet.
    func placement(bucket: String, key: String) throws -> Placed?
    /// Every node of the layout (listings ask them all).
    func everyNode() -> [PlacedNode]
}

public struct PlaneError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public struct PlaneSettings: Sendable {
    /// Bytes per stripe (each shard block is a k-th of it).
    public var blockSize = 1 << 20
    /// How long slower nodes may take to prepare once a write quorum has.
    public var grace: Span = .milliseconds(100)
    /// How long a node may take to prepare or commit.
    public var timeout: Span = .seconds(30)
    public var compress = true
    /// How long a delete marker stays before the repairer drops it, with every version under
    /// it, from every node: longer than any write that started before the delete may take.
    public var markerGrace: Span = .seconds(3600)
    public init() {}
}

/// Objects spread over the cluster: the node that takes an S3 request encodes the body into
/// stripes and streams each shard to the node of its slot, commits in two phases, and reads
/// back from any k shards (data shards first, so a healthy read decodes nothing).
public final class DataPlane: Sendable {
    public let client: DataClient
    public let map: any PlacementMap
    let settings: PlaneSettings
    let hlc = Mutex(HybridClock())
    let repairs = RepairQueue()
    let repairGate = KeyGate()
    let wallMs: @Sendable () -> Int64
    let logger: Logger

    public init(client: DataClient, map: any PlacementMap, settings: PlaneSettings = PlaneSettings(), wallMs: @escaping @Sendable () -> Int64, logger: Logger) {
        self.client = client; self.map = map; self.settings = settings; self.wallMs = wallMs; self.logger = logger
    }

    func nextVersion() -> ObjectVersion {
        let t = hlc.withLock { $0.now(wallMs()) }
        return ObjectVersion(time: t, writer: UInt64.random(in: 1 ... .max))
    }

    /// Versions other nodes hold move this node's clock, so its next write is newer than any it saw.
    func observe(_ versions: [Held]) {
        let now = wallMs()
        hlc.withLock { c in for h in versions { _ = c.observe(h.version.time, nowMs: now) } }
    }

    /// A version a node answered a prepare with (its newest committed one of the key): the
    /// write's version, fixed right after, is newer, so an overwrite through a node whose clock
    /// is behind still wins (as Garage dates a write after the version it read), and of two
    /// writes the one that completes last is the newest (S3: the last writer wins).
    func observe(_ version: ObjectVersion) {
        let now = wallMs()
        hlc.withLock { c in _ = c.observe(version.time, nowMs: now) }
    }

    static func monotonic() -> Instant { Instant(nanoseconds: Int64(NIODeadline.now().uptimeNanoseconds)) }

    func placed(_ bucket: String, _ key: String) throws -> Placed {
        guard let p = try map.placement(bucket: bucket, key: key) else { throw PlaneError("no layout places \(bucket)/\(key)") }
        return p
    }

    // MARK: Writes

    /// Starts a PUT of about `size` bytes: connects to every slot's node and opens its shard.
    /// `asOfMs` dates the version instead of the clock (an object a one-node cluster stored
    /// before it grew: any write since is newer).
    public func put(bucket: String, key: String, size: Int, asOfMs: Int64? = nil) async throws -> PutStream {
        let p = try placed(bucket, key)
        let block = max(1, min(settings.blockSize, size))
        // The shards are written under a version of now; the commit fixes the final one, after
        // what the prepared nodes hold (no round trip before the write for it).
        let version =
            asOfMs.map { ObjectVersion(time: .init(ms: UInt64(max(0, $0)), logical: 0), writer: UInt64.random(in: 1 ... .max)) } ?? nextVersion()
        let w = try PutStream(plane: self, bucket: bucket, key: key, placed: p, version: version, restamp: asOfMs == nil, blockSize: block, deleted: false)
        try await w.open()
        return w
    }

    /// Deletes a key: a delete marker, newer than every version, written like an object.
    public func delete(bucket: String, key: String) async throws {
        let p = try placed(bucket, key)
        let w = try PutStream(plane: self, bucket: bucket, key: key, placed: p, version: nextVersion(), blockSize: 1, deleted: true)
        try await w.open()
        _ = try await w.commit(
            VersionMeta(
                size: 0, etag: "", contentType: "", lastModifiedMs: wallMs(), userMetadata: [], checksums: [], k: p.k, m: p.m, blockSize: 1, stripes: 0,
                deleted: true))
    }

    /// Tells `node` to drop its file of `ref` (abort: temporary; revert: committed), on a
    /// connection of its own; failures are left to the node's own cleanup.
    func undo(_ frame: DataFrame, at node: PlacedNode) {
        guard let address = node.address else { return }
        let client = self.client, logger = self.logger
        Task {
            do {
                let answer = try await client.withConnection(to: address, node: node.name) { c in
                    try await c.send(frame)
                    return try await c.receive(timeout: client.requestTimeout)
                }
                if case .error(let e) = answer, e.code != .notFound { logger.warning("undo refused", metadata: ["node": "\(node.name)", "error": "\(e)"]) }
            } catch {
                logger.info("undo not delivered", metadata: ["node": "\(node.name)", "error": "\(error)"])
            }
        }
    }

    // MARK: Reads

    /// Each node's answer to `held` (its newest versions of the key), `.failed` for silence.
    func askHeld(_ bucket: String, _ key: String, _ p: Placed) async -> [String: ShardAnswer] {
        await askHeld(bucket, key, p, heads: false).answers
    }

    /// What a node sent along with its versions when asked with `heads`: its newest version's
    /// metadata and, for a one-stripe object, its data shard's record.
    struct Head {
        var held: Held
        var meta: [UInt8]
        var stripe: (header: [UInt8], bytes: [UInt8])?
    }

    /// `held` to every consulted node; with `heads`, each also sends its newest version's
    /// metadata and small data shard (`heldHead`), so that a small object reads in one round trip.
    func askHeld(_ bucket: String, _ key: String, _ p: Placed, heads: Bool) async -> (answers: [String: ShardAnswer], heads: [String: Head]) {
        let client = self.client, maxBytes = UInt32(clamping: settings.blockSize)
        let (answers, found) = await withTaskGroup(of: (String, ShardAnswer, Head?).self) { g in
            for n in p.consulted {
                g.addTask {
                    guard let address = n.address else { return (n.name, .failed, nil) }
                    do {
                        return try await client.withConnection(to: address, node: n.name) { c in
                            guard heads else {
                                try await c.send(.held(bucket: bucket, key: key))
                                guard case .versions(let hs) = try await c.receive(timeout: client.requestTimeout) else { return (n.name, .failed, nil) }
                                return (n.name, .holds(hs), nil)
                            }
                            try await c.send(.heldHead(bucket: bucket, key: key, maxBytes: maxBytes))
                            guard case .versions(let hs) = try await c.receive(timeout: client.requestTimeout) else { throw PlaneError("no versions") }
                            var head: Head?
                            for _ in 0..<3 {
                                switch try await c.receive(timeout: client.requestTimeout) {
                                case .end: return (n.name, .holds(hs), head)
                                case .meta(let m) where head == nil && hs.first != nil: head = Head(held: hs.first!, meta: m)
                                case .stripe(let h, let b) where head != nil && head!.stripe == nil: head!.stripe = (h, b)
                                default: throw PlaneError("\(n.name) answered heldHead out of order")
                                }
                            }
                            throw PlaneError("\(n.name) answered heldHead with too many frames")
                        }
                    } catch {
                        return (n.name, .failed, nil)
                    }
                }
            }
            var out: [String: ShardAnswer] = [:], found: [String: Head] = [:]
            for await (n, a, h) in g {
                out[n] = a
                found[n] = h
            }
            return (out, found)
        }
        for case .holds(let hs) in answers.values { observe(hs) }
        return (answers, found)
    }

    /// The newest version of a key, ready to read: nil when there is none (or a delete marker).
    public func open(bucket: String, key: String) async throws -> ObjectRead? {
        var p = try placed(bucket, key)
        var (answers, heads) = await askHeld(bucket, key, p, heads: true)
        // A node that just started may know the layout a moment before its peers' addresses.
        if case .unavailable = resolve(answers, p), p.consulted.contains(where: { $0.address == nil }) {
            try await Task.sleep(for: .milliseconds(200))
            p = try placed(bucket, key)
            (answers, heads) = await askHeld(bucket, key, p, heads: true)
        }
        switch resolve(answers, p) {
        case .notFound(let repair):
            if !repair.isEmpty { scheduleRepair(bucket: bucket, key: key) }
            return nil
        case .unavailable(let answered, let needed):
            throw PlaneError("\(answered) of \(p.nodes.count) nodes of the key's partition answered; \(needed) needed")
        case .inDoubt(let v):
            throw PlaneError("version \(v) may have been acknowledged but fewer than \(p.k) of its shards answered")
        case .serve(let version, _, _):
            if !lacking(version, p, answers).isEmpty { scheduleRepair(bucket: bucket, key: key) }
            return try await reader(bucket, key, version, p, answers, heads: heads)
        }
    }

    /// The newest version among every consulted node's answers, once a read quorum of the
    /// current slots' nodes has answered: earlier nodes add shards, never the quorum, and one
    /// silent (gone for good, perhaps) puts no version in doubt. Nodes to repair are current ones.
    func resolve(_ answers: [String: ShardAnswer], _ p: Placed) -> ReadResolution {
        let slots = Set(p.nodes.map(\.name))
        let current = p.nodes.filter { if case .holds = answers[$0.name] { true } else { false } }.count
        guard current >= p.readQuorum else { return .unavailable(answered: current, needed: p.readQuorum) }
        let counted = answers.filter { n, a in
            if slots.contains(n) { return true }
            if case .holds = a { return true }
            return false
        }
        let r = ReadResolution.resolve(counted, k: p.k, readQuorum: p.readQuorum, writeQuorum: p.writeQuorum)
        guard case .notFound(let repair) = r else { return r }
        return .notFound(repair: repair.filter(slots.contains))
    }

    /// The current slots' nodes that answered without their own shard of `v` (a node that
    /// holds another shard of it, placed by an earlier layout, lacks its slot's). Only the
    /// slots `v`'s own scheme has: a version keeps the scheme it was written with.
    func lacking(_ v: ObjectVersion, _ p: Placed, _ answers: [String: ShardAnswer]) -> [String] {
        var width = p.nodes.count
        for case .holds(let hs) in answers.values { if let h = hs.first(where: { $0.version == v }) { width = min(width, h.k + h.m) } }
        return p.nodes.prefix(width).enumerated().compactMap { i, n in
            guard case .holds(let hs) = answers[n.name], !hs.contains(where: { $0.version == v && $0.shard == i }) else { return nil }
            return n.name
        }
    }

    /// A reader of `version` over every node that answered holding it, data shards first (the
    /// first k are read, the rest stand by), its metadata loaded: from `heads` when a holder
    /// sent it, with the data shards' records they sent.
    func reader(
        _ bucket: String, _ key: String, _ version: ObjectVersion, _ p: Placed, _ answers: [String: ShardAnswer], heads: [String: Head] = [:]
    ) async throws -> ObjectRead {
        var holders: [(node: PlacedNode, shard: Int)] = []
        var scheme: (k: Int, m: Int)?
        for n in p.consulted {
            guard case .holds(let hs) = answers[n.name] else { continue }
            for h in hs where h.version == version && !h.deleted && h.k > 0 {
                // One scheme per version: the first holder's (its metadata is checked against it).
                if scheme == nil { scheme = (h.k, h.m) }
                if h.k == scheme?.k && h.m == scheme?.m && h.shard < h.k + h.m { holders.append((n, h.shard)) }
            }
        }
        holders.sort { $0.shard < $1.shard }
        let read = ObjectRead(
            plane: self, bucket: bucket, key: key, version: version, placed: p, holders: holders, k: scheme?.k ?? p.k, m: scheme?.m ?? p.m)
        let sent = heads.values.filter { $0.held.version == version && $0.held.k == read.k && $0.held.m == read.m }
        if let m = sent.lazy.compactMap({ try? VersionMeta(decoding: $0.meta) }).first(where: { $0.k == read.k && $0.m == read.m }) {
            read.meta = m
            for h in sent { if let stripe = h.stripe { read.sent[h.held.shard] = stripe } }
        } else {
            try await read.loadMeta()
        }
        return read
    }
}
