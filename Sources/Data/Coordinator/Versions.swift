import Determinism

/// One write of one object: its hybrid-clock time and the writer's random id, which breaks ties
/// between two writers in the same clock tick. Totally ordered, so every node resolves a key to
/// the same newest version.
public struct ObjectVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var time: HybridClock.Timestamp
    public var writer: UInt64
    public init(time: HybridClock.Timestamp, writer: UInt64) { self.time = time; self.writer = writer }
    public static func < (a: ObjectVersion, b: ObjectVersion) -> Bool { a.time != b.time ? a.time < b.time : a.writer < b.writer }
    public var description: String { "\(time)/\(String(writer, radix: 16))" }
}

/// One version of a key a node holds: which shard of it (its slot in the partition), or that it
/// is a delete marker.
public struct Held: Equatable, Sendable {
    public var version: ObjectVersion
    public var shard: Int
    /// The version's scheme (data and parity shards).
    public var k: Int
    public var m: Int
    public var deleted: Bool
    public init(_ version: ObjectVersion, shard: Int, k: Int, m: Int, deleted: Bool = false) {
        self.version = version; self.shard = shard; self.k = k; self.m = m; self.deleted = deleted
    }
    public func ref(_ bucket: String, _ key: String) -> ShardRef {
        ShardRef(bucket: bucket, key: key, version: version, shard: shard, k: k, m: m, deleted: deleted)
    }
}

/// What one node answered for a key: the versions it holds (its newest few: a write in flight
/// does not hide the version before it), or nothing (down, timed out).
public enum ShardAnswer: Equatable, Sendable {
    case holds([Held])
    case failed
}

/// A read's decision from the nodes' answers, as a pure function. The newest version of which
/// at least k distinct shards answered is served; a delete marker served means "no such key".
/// A newer version with fewer shards is passed over only when it cannot have been acknowledged
/// (its holders and the nodes that did not answer are fewer than the write quorum: a write still
/// in flight, or one that failed); otherwise the read is in doubt, since serving the older
/// version could undo an acknowledged write. So with write quorum k+1, a read right after a
/// write stays exact with one node down and is in doubt (never stale) with two, until repair has
/// written the missing shards. Nodes that answered without the served version (nor anything
/// newer, for a delete) are to be repaired. Fewer than `readQuorum` answers: unavailable.
public enum ReadResolution: Equatable, Sendable {
    /// Read these shards (data shards first: shard < k), from these nodes.
    case serve(ObjectVersion, shards: [ShardSource], repair: [String])
    case notFound(repair: [String])
    case unavailable(answered: Int, needed: Int)
    /// This version may have been acknowledged, but fewer than k of its shards answered.
    case inDoubt(ObjectVersion)

    public struct ShardSource: Equatable, Sendable {
        public var node: String
        public var shard: Int
    }

    /// `answers` has one entry per node the key's partition lives on (`.failed` for silence).
    public static func resolve(_ answers: [String: ShardAnswer], k: Int, readQuorum: Int, writeQuorum: Int) -> ReadResolution {
        var held: [(node: String, versions: [Held])] = []
        for (node, a) in answers.sorted(by: { $0.key < $1.key }) { if case .holds(let h) = a { held.append((node, h)) } }
        guard held.count >= readQuorum else { return .unavailable(answered: held.count, needed: readQuorum) }
        // Distinct shards per version (two nodes holding the same shard count once).
        var shardsOf: [ObjectVersion: [Int: String]] = [:]
        var deleted: Set<ObjectVersion> = []
        var kOf: [ObjectVersion: Int] = [:]
        for (node, versions) in held {
            for h in versions {
                if shardsOf[h.version, default: [:]][h.shard] == nil { shardsOf[h.version, default: [:]][h.shard] = node }
                if h.deleted { deleted.insert(h.version) }
                // The version's own k (its scheme may differ from the layout's now); the largest
                // any holder claims, so a lying or damaged holder cannot make too few look whole.
                kOf[h.version] = max(kOf[h.version] ?? 0, h.k > 0 ? h.k : k)
            }
        }
        // A delete marker is whole with one answer (it carries no data); an object needs k shards.
        let silent = answers.count - held.count
        var served: ObjectVersion?
        for v in shardsOf.keys.sorted(by: >) {
            if deleted.contains(v) || shardsOf[v]!.count >= kOf[v] ?? k {
                served = v
                break
            }
            let holders = held.filter { $0.versions.contains { $0.version == v } }.count
            if holders + silent >= writeQuorum { return .inDoubt(v) }
        }
        guard let served else { return .notFound(repair: []) }
        if deleted.contains(served) {
            return .notFound(repair: held.filter { !$0.versions.contains { $0.version >= served } }.map(\.node))
        }
        let repair = held.filter { !$0.versions.contains { $0.version == served } }.map(\.node)
        let shards = shardsOf[served]!.sorted { $0.key < $1.key }.prefix(kOf[served] ?? k).map { ShardSource(node: $0.value, shard: $0.key) }
        return .serve(served, shards: Array(shards), repair: repair)
    }
}
