import Determinism
import Support

/// One shard of one object version, as nodes name it to each other.
public struct ShardRef: Hashable, Sendable {
    public var bucket: String
    public var key: String
    public var version: ObjectVersion
    public var shard: Int
    /// The version's scheme: k data and m parity shards (each version keeps the one it was
    /// written with, whatever the layout's is now).
    public var k: Int
    public var m: Int
    public var deleted: Bool
    public init(bucket: String, key: String, version: ObjectVersion, shard: Int, k: Int, m: Int, deleted: Bool = false) {
        self.bucket = bucket; self.key = key; self.version = version; self.shard = shard; self.k = k; self.m = m; self.deleted = deleted
    }
    public var held: Held { Held(version, shard: shard, k: k, m: m, deleted: deleted) }
}

/// What nodes say to each other over the data connection: one request at a time per
/// connection, its shard blocks streamed after it (TCP's flow control is the backpressure),
/// then its answer.
///
///     putShard → stripe* → finish   answered prepared | preparedAfter | error
///     commit | commitAs | abort | revert   answered ok | error
///     held                          answered versions | error
///     getShard                      answered meta → stripe* → end | error
///     list                          answered listing | error
public enum DataFrame: Equatable, Sendable {
    case putShard(ShardRef)
    /// One stripe's shard block: the codec's 13-byte stripe header and the bytes.
    case stripe(header: [UInt8], bytes: [UInt8])
    /// A put's end, with the version's metadata (known only once the body ended).
    case finish(meta: [UInt8])
    /// A `getShard` stream's end.
    case end
    case commit(ShardRef)
    /// Makes the finished shard `ShardRef` names visible as `version` instead: a write's
    /// version is fixed when it commits, so the write that completes last is the newest.
    case commitAs(ShardRef, ObjectVersion)
    case abort(ShardRef)
    case revert(ShardRef)
    case held(bucket: String, key: String)
    /// `held`, answered as `versions` then, when the newest is an object's version: its `meta`,
    /// its one `stripe` if it has only one, the shard is a data shard and the record is at most
    /// `maxBytes`, and `end` (a small object read in one round trip).
    case heldHead(bucket: String, key: String, maxBytes: UInt32)
    /// Stripes `first..<first+count` of a shard.
    case getShard(ShardRef, first: UInt32, count: UInt32)
    case prepared
    /// Prepared; the newest version the node has committed of the key (so the writer's version
    /// at commit is newer than every write completed before it).
    case preparedAfter(ObjectVersion)
    case ok
    case versions([Held])
    case meta([UInt8])
    case error(DataError)
    /// Keys of a bucket after `after` starting with `prefix`, at most `limit`.
    case list(bucket: String, prefix: String, after: String, limit: UInt32)
    /// In key order; `truncated` when more may follow the last.
    case listing([ListEntry], truncated: Bool)
}

extension DataFrame {
    /// A prepare's answer, with or without the node's newest version.
    public var isPrepared: Bool {
        switch self {
        case .prepared, .preparedAfter: true
        default: false
        }
    }
}

/// A node's newest version of one key, for listings: the version and its metadata.
public struct ListEntry: Equatable, Sendable {
    public var key: String
    public var version: ObjectVersion
    public var deleted: Bool
    public var meta: [UInt8]
    public init(key: String, version: ObjectVersion, deleted: Bool, meta: [UInt8]) {
        self.key = key; self.version = version; self.deleted = deleted; self.meta = meta
    }
}

public struct DataError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: UInt8, Sendable { case notFound = 1, exists = 2, corrupt = 3, io = 4, refused = 5 }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { "\(code): \(message)" }
}

/// The versioned binary encoding of data frames (the stream adds a length prefix and seals it).
/// Every count and length is bounded before it is used.
///
///     version:u8 kind:u8 body
public enum DataWire {
    public static let version: UInt8 = 1
    public static let stripeHeaderBytes = 13
    public static let maxBucket = 255
    public static let maxKey = 1024
    public static let maxMeta = 1 << 20
    public static let maxBlock = 64 << 20
    public static let maxVersions = 1024
    public static let maxListing = 1000
    /// A listing answer stops adding keys near this size (a frame stays far below the connection's bound).
    public static let listingBytes = 1 << 20
    /// A frame never exceeds this (the largest is one shard block of the largest stripe).
    public static let maxFrameBytes = maxBlock + 64

    public static func encode(_ f: DataFrame) -> [UInt8] {
        var w = BinaryWriter()
        w.u8(version)
        switch f {
        case .putShard(let s): w.u8(1); ref(s, &w)
        case .stripe(let header, let bytes):
            precondition(header.count == stripeHeaderBytes, "stripe headers are 13 bytes")
            w.u8(2)
            for b in header { w.u8(b) }
            w.blob(bytes)
        case .end: w.u8(3)
        case .commit(let s): w.u8(4); ref(s, &w)
        case .abort(let s): w.u8(5); ref(s, &w)
        case .revert(let s): w.u8(6); ref(s, &w)
        case .held(let b, let k): w.u8(7); w.string(b); w.string(k)
        case .heldHead(let b, let k, let max): w.u8(17); w.string(b); w.string(k); w.u32(max)
        case .getShard(let s, let first, let count): w.u8(8); ref(s, &w); w.u32(first); w.u32(count)
        case .prepared: w.u8(9)
        case .preparedAfter(let v): w.u8(19); w.u64(v.time.raw); w.u64(v.writer)
        case .commitAs(let s, let v): w.u8(18); ref(s, &w); w.u64(v.time.raw); w.u64(v.writer)
        case .ok: w.u8(10)
        case .versions(let hs):
            w.u8(11)
            w.u32(UInt32(hs.count))
            for h in hs {
                w.u64(h.version.time.raw); w.u64(h.version.writer); w.u8(UInt8(h.shard)); w.u8(UInt8(h.k)); w.u8(UInt8(h.m)); w.u8(h.deleted ? 1 : 0)
            }
        case .meta(let m): w.u8(12); w.blob(m)
        case .finish(let meta): w.u8(14); w.blob(meta)
        case .list(let b, let p, let a, let n): w.u8(15); w.string(b); w.string(p); w.string(a); w.u32(n)
        case .listing(let es, let truncated):
            w.u8(16)
            w.u32(UInt32(es.count))
            for e in es { w.string(e.key); w.u64(e.version.time.raw); w.u64(e.version.writer); w.u8(e.deleted ? 1 : 0); w.blob(e.meta) }
            w.u8(truncated ? 1 : 0)
        case .error(let e): w.u8(13); w.u8(e.code.rawValue); w.string(String(e.message.utf8.prefix(4096)) ?? "")
        }
        return w.bytes
    }

    static func ref(_ s: ShardRef, _ w: inout BinaryWriter) {
        w.string(s.bucket); w.string(s.key)
        w.u64(s.version.time.raw); w.u64(s.version.writer)
        w.u8(UInt8(s.shard)); w.u8(UInt8(s.k)); w.u8(UInt8(s.m)); w.u8(s.deleted ? 1 : 0)
    }

    static func ref(_ r: inout BinaryReader) throws(DecodeError) -> ShardRef {
        let bucket = try r.string(max: maxBucket), key = try r.string(max: maxKey)
        let version = ObjectVersion(time: HybridClock.Timestamp(raw: try r.u64()), writer: try r.u64())
        let shard = Int(try r.u8()), k = Int(try r.u8()), m = Int(try r.u8())
        return ShardRef(bucket: bucket, key: key, version: version, shard: shard, k: k, m: m, deleted: try flag(&r))
    }

    static func flag(_ r: inout BinaryReader) throws(DecodeError) -> Bool {
        switch try r.u8() {
        case 0: false
        case 1: true
        default: throw DecodeError("flag is neither 0 nor 1")
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> DataFrame {
        guard bytes.count <= maxFrameBytes else { throw DecodeError("data frame of \(bytes.count) bytes") }
        var r = BinaryReader(bytes)
        guard try r.u8() == version else { throw DecodeError("unknown data frame version") }
        let f: DataFrame
        switch try r.u8() {
        case 1: f = .putShard(try ref(&r))
        case 2:
            var header: [UInt8] = []
            for _ in 0..<stripeHeaderBytes { header.append(try r.u8()) }
            f = .stripe(header: header, bytes: try r.blob(max: maxBlock))
        case 3: f = .end
        case 4: f = .commit(try ref(&r))
        case 5: f = .abort(try ref(&r))
        case 6: f = .revert(try ref(&r))
        case 7: f = .held(bucket: try r.string(max: maxBucket), key: try r.string(max: maxKey))
        case 17: f = .heldHead(bucket: try r.string(max: maxBucket), key: try r.string(max: maxKey), maxBytes: try r.u32())
        case 8: f = .getShard(try ref(&r), first: try r.u32(), count: try r.u32())
        case 9: f = .prepared
        case 19: f = .preparedAfter(ObjectVersion(time: HybridClock.Timestamp(raw: try r.u64()), writer: try r.u64()))
        case 18:
            let s = try ref(&r)
            f = .commitAs(s, ObjectVersion(time: HybridClock.Timestamp(raw: try r.u64()), writer: try r.u64()))
        case 10: f = .ok
        case 11:
            let n = try r.u32()
            guard n <= maxVersions else { throw DecodeError("\(n) versions") }
            var hs: [Held] = []
            for _ in 0..<n {
                let v = ObjectVersion(time: HybridClock.Timestamp(raw: try r.u64()), writer: try r.u64())
                let shard = Int(try r.u8()), k = Int(try r.u8()), m = Int(try r.u8())
                hs.append(Held(v, shard: shard, k: k, m: m, deleted: try flag(&r)))
            }
            f = .versions(hs)
        case 12: f = .meta(try r.blob(max: maxMeta))
        case 13:
            guard let code = DataError.Code(rawValue: try r.u8()) else { throw DecodeError("unknown error code") }
            f = .error(DataError(code, try r.string(max: 4096)))
        case 14: f = .finish(meta: try r.blob(max: maxMeta))
        case 15:
            f = .list(bucket: try r.string(max: maxBucket), prefix: try r.string(max: maxKey), after: try r.string(max: maxKey), limit: try r.u32())
        case 16:
            let n = try r.u32()
            guard n <= maxListing else { throw DecodeError("\(n) listing entries") }
            var es: [ListEntry] = []
            for _ in 0..<n {
                let key = try r.string(max: maxKey)
                let v = ObjectVersion(time: HybridClock.Timestamp(raw: try r.u64()), writer: try r.u64())
                es.append(ListEntry(key: key, version: v, deleted: try flag(&r), meta: try r.blob(max: maxMeta)))
            }
            f = .listing(es, truncated: try flag(&r))
        default: throw DecodeError("unknown data frame kind")
        }
        try r.expectEnd()
        return f
    }
}
