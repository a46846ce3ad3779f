import ChunkStore
import Files
import Security
import Synchronization

/// Objects on one node's disk: buckets, object metadata records, shard files and multipart uploads.
///
/// Layout under `root` (names never come from object keys; they are hashes or random ids):
///
///     buckets/<sha256(name)>.bucket       bucket record
///     objects/<h:2>/<h>.meta              object record, h = sha256(bucket "/" key)
///     shards/<id:2>/<id>                  shard files, id random
///     uploads/<uploadID>.upload           multipart upload record
///     uploads/<uploadID>.<n>.part         uploaded part record
///     quarantine/<h>.meta                 object record start-up could not place (kept, with its shards)
///
/// A write streams into a fresh shard file, fsyncs it, then commits by atomically replacing the
/// metadata record; only then are the replaced version's shards removed. A crash at any instant
/// leaves the old or the new record, never a torn one; shards no record points to are collected
/// at start-up. All methods block on disk I/O: call them off the event loop.
public final class ObjectStore: Sendable {
    public let root: String
    let clock: @Sendable () -> Int64
    let state: Mutex<Index>
    /// Multipart uploads in progress per bucket; past it CreateMultipartUpload is refused.
    public let maxUploadsPerBucket: Int
    /// Commits to the same (bucket, key) are serialized so the record on disk and the index agree.
    private let stripes: [Stripe]

    final class Stripe: Sendable { let lock = Mutex(()) }

    /// Opens (creating if needed) the store at `root` and rebuilds the index from disk.
    /// `clock` returns milliseconds since the Unix epoch.
    public init(root: String, maxUploadsPerBucket: Int = 10_000, clock: @escaping @Sendable () -> Int64) throws(ObjectError) {
        self.root = root
        self.maxUploadsPerBucket = maxUploadsPerBucket
        self.clock = clock
        stripes = (0..<64).map { _ in Stripe() }
        do throws(FileError) {
            for d in ["buckets", "uploads", "quarantine"] { try Files.makeDirectory("\(root)/\(d)") }
            // objects/ and shards/ fan out by the first two hex digits of a hash or random id.
            let hex = Array("0123456789abcdef")
            for d in ["objects", "shards"] {
                for a in hex { for b in hex { try Files.makeDirectory("\(root)/\(d)/\(a)\(b)") } }
            }
            let index = try Recovery.load(root: root)
            quarantined = index.quarantined
            state = Mutex(index)
        } catch { throw .storage(error) }
    }

    /// What this start moved to `quarantine/` and why; the agent logs it.
    public let quarantined: [(path: String, reason: String)]

    // MARK: Paths

    static func hashHex(_ s: String) -> String { Digest.sha256(Array(s.utf8)).hex }
    func objectPath(_ bucket: String, _ key: String) -> String {
        let h = Self.hashHex(bucket + "/" + key)
        return "\(root)/objects/\(h.prefix(2))/\(h).meta"
    }
    func bucketPath(_ name: String) -> String { "\(root)/buckets/\(Self.hashHex(name)).bucket" }
    public func shardPath(_ id: String) -> String { "\(root)/shards/\(id.prefix(2))/\(id)" }
    func uploadPath(_ id: String) -> String { "\(root)/uploads/\(id).upload" }
    func partPath(_ id: String, _ n: Int) -> String { "\(root)/uploads/\(id).\(n).part" }

    func stripe(_ bucket: String, _ key: String) -> Stripe {
        var h: UInt64 = 14_695_981_039_346_656_037
        for b in bucket.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
        return stripes[Int(h % UInt64(stripes.count))]
    }

    static func randomID() -> String { Sodium.randomBytes(16).hex }

    // MARK: Buckets

    public func createBucket(_ name: String, createdMs: Int64? = nil) throws(ObjectError) {
        try Names.checkBucket(name)
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard s.buckets[name] == nil else { throw .bucketAlreadyOwnedByYou(name) }
            let info = BucketInfo(name: name, createdMs: createdMs ?? clock())
            do throws(FileError) { try Files.writeAtomically(info.encoded(), to: bucketPath(name)) } catch { throw .storage(error) }
            s.buckets[name] = BucketEntry(info: info)
        }
    }

    /// Throws unless `name` is a valid bucket name.
    public static func checkBucketName(_ name: String) throws(ObjectError) { try Names.checkBucket(name) }

    /// Throws unless `key` is a valid object key (1 to 1,024 bytes).
    public static func checkKey(_ key: String) throws(ObjectError) { try Names.checkKey(key) }

    /// Throws `noSuchBucket` or `bucketNotEmpty` unless deleting `name` would succeed here.
    public func checkDeletable(_ name: String) throws(ObjectError) {
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard let b = s.buckets[name] else { throw .noSuchBucket(name) }
            guard b.objects.isEmpty else { throw .bucketNotEmpty(name) }
            for u in s.uploads.values where u.info.bucket == name { throw .bucketNotEmpty(name) }
        }
    }

    public func deleteBucket(_ name: String) throws(ObjectError) {
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard let b = s.buckets[name] else { throw .noSuchBucket(name) }
            guard b.objects.isEmpty else { throw .bucketNotEmpty(name) }
            for u in s.uploads.values where u.info.bucket == name { throw .bucketNotEmpty(name) }
            do throws(FileError) {
                try Files.remove(bucketPath(name))
                try Files.syncDirectory(of: bucketPath(name))
            } catch { throw .storage(error) }
            s.buckets[name] = nil
        }
    }

    public func bucket(_ name: String) throws(ObjectError) -> BucketInfo {
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard let b = s.buckets[name] else { throw .noSuchBucket(name) }
            return b.info
        }
    }

    public func listBuckets() -> [BucketInfo] {
        state.withLock { $0.buckets.values.map(\.info).sorted { $0.name < $1.name } }
    }

    // MARK: Objects

    /// A new, empty shard file to stream an object or part into. Commit it with `putObject` or
    /// `putPart`, or `abort()` it.
    public func newShard(compress: Bool = true) throws(ObjectError) -> (id: String, writer: ShardWriter) {
        let id = Self.randomID()
        let path = shardPath(id)
        do throws(FileError) {
            return (id, try ShardWriter(path: path, compress: compress))
        } catch { throw .storage(error) }
    }

    /// Makes a finished shard's directory entry durable before a record points to it.
    func syncShards(_ parts: [PartRef]) throws(ObjectError) {
        do throws(FileError) { for p in parts { try Files.syncDirectory(of: shardPath(p.shardID)) } } catch { throw .storage(error) }
    }

    public func head(bucket: String, key: String) throws(ObjectError) -> ObjectInfo {
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard let b = s.buckets[bucket] else { throw .noSuchBucket(bucket) }
            guard let o = b.objects[IndexKey(key)] else { throw .noSuchKey(key) }
            return o
        }
    }

    /// Commits an object whose parts are finished shard files, replacing any previous version.
    @discardableResult
    public func putObject(
        bucket: String, key: String, parts: [PartRef], etag: String, contentType: String,
        userMetadata: [Metadatum], checksums: [Metadatum]
    ) throws(ObjectError) -> ObjectInfo {
        try Names.checkKey(key)
        try syncShards(parts)
        let info = ObjectInfo(
            bucket: bucket, key: key, versionID: Self.randomID(), size: parts.reduce(0) { $0 + $1.size },
            etag: etag, contentType: contentType, lastModifiedMs: clock(),
            userMetadata: userMetadata, parts: parts, checksums: checksums)
        try commit(info)
        return info
    }

    /// Writes the record atomically, updates the index and removes the replaced version's shards.
    func commit(_ info: ObjectInfo, alsoRemoving extraPaths: [String] = []) throws(ObjectError) {
        try stripe(info.bucket, info.key).lock.withLock { (_: inout Void) throws(ObjectError) in
            try commitLocked(info, alsoRemoving: extraPaths)
        }
    }

    /// `commit` for a caller that holds the key's stripe lock.
    func commitLocked(_ info: ObjectInfo, alsoRemoving extraPaths: [String] = []) throws(ObjectError) {
        let path = objectPath(info.bucket, info.key)
        _ = try bucket(info.bucket)
        do throws(FileError) { try Files.writeAtomically(info.encoded(), to: path) } catch { throw .storage(error) }
        var old: ObjectInfo?
        let placed = state.withLock { (s: inout Index) -> Bool in
            guard s.buckets[info.bucket] != nil else { return false }
            old = s.buckets[info.bucket]!.insert(info)
            return true
        }
        guard placed else {
            // The bucket was deleted while the record was written (it was empty, so no older
            // version sits at this path): take the record back rather than leave an orphan.
            try? Files.remove(path)
            try? Files.syncDirectory(of: path)
            throw .noSuchBucket(info.bucket)
        }
        let keep = Set(info.parts.map(\.shardID))
        for p in old?.parts ?? [] where !keep.contains(p.shardID) { try? Files.remove(shardPath(p.shardID)) }
        for p in extraPaths { try? Files.remove(p) }
    }

    public func deleteObject(bucket: String, key: String) throws(ObjectError) {
        try stripe(bucket, key).lock.withLock { (_: inout Void) throws(ObjectError) in
            let current: ObjectInfo
            do throws(ObjectError) { current = try head(bucket: bucket, key: key) } catch .noSuchKey { return }  // S3 deletes of missing keys succeed.
            // Disk first: if the unlink fails, the index still shows what a restart would find.
            let path = objectPath(bucket, key)
            do throws(FileError) {
                try Files.remove(path)
                try Files.syncDirectory(of: path)
            } catch { throw .storage(error) }
            _ = state.withLock { $0.buckets[bucket]?.remove(key) }
            for p in current.parts { try? Files.remove(shardPath(p.shardID)) }
        }
    }

    /// Opens a part's shard for reading.
    public func openShard(_ part: PartRef) throws(ObjectError) -> ShardReader {
        do throws(FileError) {
            let r = try ShardReader(path: shardPath(part.shardID))
            guard r.rawSize == part.size else { throw FileError.corrupt("shard \(part.shardID) holds \(r.rawSize) bytes, record says \(part.size)") }
            return r
        } catch { throw .storage(error) }
    }
}
