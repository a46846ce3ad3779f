import Objects
import Support

/// What every shard file of one object version carries about the version: enough to answer a
/// HEAD, list the key and decode the stripes from any k of its shards.
public struct VersionMeta: Equatable, Sendable {
    public var size: Int
    public var etag: String
    public var contentType: String
    public var lastModifiedMs: Int64
    public var userMetadata: [Metadatum]
    public var checksums: [Metadatum]
    /// The erasure scheme and block size the stripes were made with.
    public var k: Int
    public var m: Int
    public var blockSize: Int
    public var stripes: Int
    public var deleted: Bool
    /// The sizes of a multipart object's parts, in order (empty: one part), for `?partNumber=`.
    public var partSizes: [Int]

    public init(
        size: Int, etag: String, contentType: String, lastModifiedMs: Int64, userMetadata: [Metadatum], checksums: [Metadatum],
        k: Int, m: Int, blockSize: Int, stripes: Int, deleted: Bool = false, partSizes: [Int] = []
    ) {
        self.size = size; self.etag = etag; self.contentType = contentType; self.lastModifiedMs = lastModifiedMs
        self.userMetadata = userMetadata; self.checksums = checksums
        self.k = k; self.m = m; self.blockSize = blockSize; self.stripes = stripes; self.deleted = deleted; self.partSizes = partSizes
    }

    /// Format 2 added the part sizes; format 1 (one part) still reads.
    static let format: UInt8 = 2
    static let maxParts = 10_000
    /// S3's largest object, and the codec's largest block.
    static let maxSize = 5 << 40
    static let maxBlock = 64 << 20

    public func encoded() -> [UInt8] {
        var w = BinaryWriter()
        w.u8(Self.format)
        w.u64(UInt64(size)); w.string(etag); w.string(contentType); w.i64(lastModifiedMs)
        for list in [userMetadata, checksums] {
            w.u32(UInt32(list.count))
            for d in list { w.string(d.name); w.string(d.value) }
        }
        w.u8(UInt8(k)); w.u8(UInt8(m)); w.u32(UInt32(blockSize)); w.u32(UInt32(stripes)); w.u8(deleted ? 1 : 0)
        w.u32(UInt32(partSizes.count))
        for p in partSizes { w.u64(UInt64(p)) }
        return w.bytes
    }

    /// Every number is bounded before use: the bytes come from a peer or a disk.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        let format = try r.u8()
        guard format == 1 || format == Self.format else { throw DecodeError("unknown version metadata format \(format)") }
        size = try r.int(max: Self.maxSize)
        etag = try r.string(max: 256); contentType = try r.string(max: 4096); lastModifiedMs = try r.i64()
        func list() throws(DecodeError) -> [Metadatum] {
            let n = Int(try r.u32())
            guard n <= 1024 else { throw DecodeError("\(n) metadata entries") }
            var out: [Metadatum] = []
            for _ in 0..<n { out.append(Metadatum(try r.string(max: 4096), try r.string(max: 4096))) }
            return out
        }
        userMetadata = try list(); checksums = try list()
        k = Int(try r.u8()); m = Int(try r.u8())
        blockSize = Int(try r.u32()); stripes = Int(try r.u32())
        deleted = try r.u8() == 1
        partSizes = []
        if format >= 2 {
            let n = Int(try r.u32())
            guard n <= Self.maxParts else { throw DecodeError("\(n) parts") }
            for _ in 0..<n { partSizes.append(try r.int(max: Self.maxSize)) }
            guard partSizes.isEmpty || partSizes.reduce(0, +) == size else { throw DecodeError("part sizes do not add up to \(size)") }
        }
        try r.expectEnd()
        guard k >= 1, k + m <= 32, blockSize >= 1, blockSize <= Self.maxBlock, stripes == (size + blockSize - 1) / blockSize else {
            throw DecodeError("version metadata out of range: k \(k) m \(m) block \(blockSize) stripes \(stripes) size \(size)")
        }
    }
}
