import Support

/// One stored piece of an object: a shard file holding `size` bytes whose MD5 is `etag`.
/// A simple PUT has one part; a completed multipart upload keeps one per uploaded part.
public struct PartRef: Sendable, Equatable {
    public var shardID: String
    public var size: Int
    /// Hex MD5 of the part's bytes.
    public var etag: String

    public init(shardID: String, size: Int, etag: String) {
        self.shardID = shardID; self.size = size; self.etag = etag
    }
}

/// Everything known about one object version; stored as its metadata record.
public struct ObjectInfo: Sendable, Equatable {
    public var bucket: String
    public var key: String
    public var versionID: String
    public var size: Int
    /// S3 ETag without quotes: hex MD5, or `md5-of-md5s-N` for multipart objects.
    public var etag: String
    public var contentType: String
    public var lastModifiedMs: Int64
    /// User metadata (`x-amz-meta-*`), lower-cased names without the prefix, in order.
    public var userMetadata: [Metadatum]
    public var parts: [PartRef]
    /// Additional checksums the client sent (`x-amz-checksum-*`): algorithm name → base64 value.
    public var checksums: [Metadatum]

    public init(
        bucket: String, key: String, versionID: String, size: Int, etag: String, contentType: String,
        lastModifiedMs: Int64, userMetadata: [Metadatum], parts: [PartRef], checksums: [Metadatum]
    ) {
        self.bucket = bucket; self.key = key; self.versionID = versionID; self.size = size; self.etag = etag
        self.contentType = contentType; self.lastModifiedMs = lastModifiedMs; self.userMetadata = userMetadata
        self.parts = parts; self.checksums = checksums
    }

    /// True for objects assembled by CompleteMultipartUpload (their ETag ends in `-N`).
    public var isMultipart: Bool { etag.contains("-") }
}

public struct Metadatum: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) { self.name = name; self.value = value }
}

public struct BucketInfo: Sendable, Equatable {
    public var name: String
    public var createdMs: Int64
}

/// A multipart upload in progress.
public struct UploadInfo: Sendable, Equatable {
    public var uploadID: String
    public var bucket: String
    public var key: String
    public var contentType: String
    public var userMetadata: [Metadatum]
    public var initiatedMs: Int64
    public init(uploadID: String, bucket: String, key: String, contentType: String, userMetadata: [Metadatum], initiatedMs: Int64) {
        self.uploadID = uploadID; self.bucket = bucket; self.key = key; self.contentType = contentType
        self.userMetadata = userMetadata; self.initiatedMs = initiatedMs
    }
}

public struct UploadedPart: Sendable, Equatable {
    public var number: Int
    public var part: PartRef
    public var lastModifiedMs: Int64
    public init(number: Int, part: PartRef, lastModifiedMs: Int64) { self.number = number; self.part = part; self.lastModifiedMs = lastModifiedMs }
}

// MARK: - Binary records (version byte first; decoders reject unknown versions and trailing bytes)

enum RecordKind: UInt8 { case object = 1, bucket = 2, upload = 3, part = 4 }
/// Sizes in records are at most S3's 5 TiB object limit (10,000 of them still sum in an Int).
let maxObjectBytes = 5 << 40
let recordVersion: UInt8 = 1

extension BinaryWriter {
    mutating func header(_ kind: RecordKind) { u8(kind.rawValue); u8(recordVersion) }
    mutating func metadata(_ items: [Metadatum]) {
        u32(UInt32(items.count))
        for m in items { string(m.name); string(m.value) }
    }
    mutating func part(_ p: PartRef) { string(p.shardID); u64(UInt64(p.size)); string(p.etag) }
}

extension BinaryReader {
    mutating func header(_ kind: RecordKind) throws(DecodeError) {
        let k = try u8(), v = try u8()
        guard k == kind.rawValue, v == recordVersion else { throw DecodeError("record kind \(k) version \(v), expected \(kind) v\(recordVersion)") }
    }
    mutating func metadata() throws(DecodeError) -> [Metadatum] {
        let n = Int(try u32())
        guard n <= 10_000 else { throw DecodeError("\(n) metadata entries") }
        var out: [Metadatum] = []
        for _ in 0..<n { out.append(Metadatum(try string(), try string())) }
        return out
    }
    mutating func part() throws(DecodeError) -> PartRef {
        PartRef(shardID: try string(), size: try int(max: maxObjectBytes), etag: try string())
    }
}

extension ObjectInfo {
    func encoded() -> [UInt8] {
        var w = BinaryWriter()
        w.header(.object)
        w.string(bucket); w.string(key); w.string(versionID); w.u64(UInt64(size)); w.string(etag)
        w.string(contentType); w.i64(lastModifiedMs); w.metadata(userMetadata)
        w.u32(UInt32(parts.count)); for p in parts { w.part(p) }
        w.metadata(checksums)
        return w.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        try r.header(.object)
        bucket = try r.string(); key = try r.string(); versionID = try r.string(); size = try r.int(max: maxObjectBytes)
        etag = try r.string(); contentType = try r.string(); lastModifiedMs = try r.i64(); userMetadata = try r.metadata()
        let n = Int(try r.u32())
        guard n <= 10_000 else { throw DecodeError("\(n) parts") }
        parts = []
        for _ in 0..<n { parts.append(try r.part()) }
        checksums = try r.metadata()
        try r.expectEnd()
        guard parts.reduce(0, { $0 + $1.size }) == size else { throw DecodeError("object \(key): parts do not add up to size") }
    }
}

extension BucketInfo {
    func encoded() -> [UInt8] {
        var w = BinaryWriter(); w.header(.bucket); w.string(name); w.i64(createdMs); return w.bytes
    }
    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        try r.header(.bucket); name = try r.string(); createdMs = try r.i64(); try r.expectEnd()
    }
}

extension UploadInfo {
    func encoded() -> [UInt8] {
        var w = BinaryWriter(); w.header(.upload)
        w.string(uploadID); w.string(bucket); w.string(key); w.string(contentType); w.metadata(userMetadata); w.i64(initiatedMs)
        return w.bytes
    }
    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        try r.header(.upload)
        uploadID = try r.string(); bucket = try r.string(); key = try r.string(); contentType = try r.string()
        userMetadata = try r.metadata(); initiatedMs = try r.i64(); try r.expectEnd()
    }
}

extension UploadedPart {
    func encoded() -> [UInt8] {
        var w = BinaryWriter(); w.header(.part); w.u32(UInt32(number)); w.part(part); w.i64(lastModifiedMs); return w.bytes
    }
    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        try r.header(.part); number = Int(try r.u32()); part = try r.part(); lastModifiedMs = try r.i64(); try r.expectEnd()
    }
}
