/// What a node's repairer found on its last pass over the shards it holds, gossiped as the
/// reserved tag `dstat` (space-separated `name=value` fields, unknown names ignored, every
/// number bounded), so that `stacks status` and the leader see every node's without asking it.
///
/// Objects are counted once across the cluster: by the node holding the key's newest version at
/// the lowest slot (the one that repairs it).
public struct DataReport: Sendable, Equatable {
    public static let tag = "dstat"
    /// Bytes of shard files on the node, and bytes free on its data file system.
    public var usedBytes: UInt64 = 0
    public var freeBytes: UInt64 = 0
    /// Keys counted on the last pass (newest version an object; delete markers not counted).
    public var objects: UInt64 = 0
    /// Objects missing at least one shard after the pass's repairs.
    public var degraded: UInt64 = 0
    /// Objects with no shard to spare (k or fewer left), or that could not be read to be checked.
    public var atRisk: UInt64 = 0
    /// Repairs under way now.
    public var repairing: UInt64 = 0
    /// Shards this node holds that the current layout places elsewhere: keys and bytes left.
    public var movingKeys: UInt64 = 0
    public var movingBytes: UInt64 = 0
    /// Bytes of misplaced shards moved away (their new node holds them; the copy here dropped)
    /// in this pass, and the pass's rate of moving, bytes per second.
    public var movedBytes: UInt64 = 0
    public var moveRate: UInt64 = 0
    /// The newest layout version under which a whole pass found nothing misplaced here.
    public var settledVersion: UInt64 = 0
    /// The scrub's progress: bytes read (checksums verified) in this pass, of the bytes the pass
    /// found here at its start; and when a whole pass last finished (Unix seconds; 0: never).
    public var scrubbedBytes: UInt64 = 0
    public var scrubTotalBytes: UInt64 = 0
    public var lastFullScrubS: UInt64 = 0

    public init() {}

    // Key paths are immutable values; Swift does not mark them Sendable yet.
    nonisolated(unsafe) static let names: [(String, WritableKeyPath<DataReport, UInt64>)] = [
        ("used", \.usedBytes), ("free", \.freeBytes), ("objects", \.objects), ("degraded", \.degraded), ("risk", \.atRisk),
        ("repairing", \.repairing), ("moving", \.movingKeys), ("movingb", \.movingBytes), ("moved", \.movedBytes), ("rate", \.moveRate),
        ("settled", \.settledVersion), ("scrub", \.scrubbedBytes), ("scrubt", \.scrubTotalBytes), ("scrubf", \.lastFullScrubS),
    ]

    public var encoded: String { Self.names.map { "\($0.0)=\(self[keyPath: $0.1])" }.joined(separator: " ") }

    /// Parses a tag; nil when it is not one (fields that do not parse are left at 0).
    public init?(tag: String?) {
        guard let tag, tag.utf8.count <= 1024 else { return nil }
        for field in tag.split(separator: " ") {
            let kv = field.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let path = Self.names.first(where: { $0.0 == kv[0] })?.1, kv[1].utf8.count <= 20, let v = UInt64(kv[1]) else { continue }
            self[keyPath: path] = v
        }
    }
}
