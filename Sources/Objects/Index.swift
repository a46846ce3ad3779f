import ChunkStore

/// Object keys compared as bytes, as S3 does: Swift `String` equality and ordering follow Unicode
/// canonical equivalence, which would merge distinct keys and sort differently from S3.
struct IndexKey: Hashable, Comparable {
    let bytes: [UInt8]
    init(_ key: String) { bytes = Array(key.utf8) }
    static func < (a: IndexKey, b: IndexKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

struct BucketEntry {
    var info: BucketInfo
    var objects: [IndexKey: ObjectInfo] = [:]
    /// Keys in byte order; rebuilt lazily after a key is added or removed.
    var sorted: [IndexKey]? = []

    mutating func insert(_ o: ObjectInfo) -> ObjectInfo? {
        let k = IndexKey(o.key)
        let old = objects.updateValue(o, forKey: k)
        if old == nil { sorted = nil }
        return old
    }

    mutating func remove(_ key: String) -> ObjectInfo? {
        let old = objects.removeValue(forKey: IndexKey(key))
        if old != nil { sorted = nil }
        return old
    }

    mutating func sortedKeys() -> [IndexKey] {
        if let sorted { return sorted }
        let s = objects.keys.sorted()
        sorted = s
        return s
    }
}

struct UploadEntry {
    var info: UploadInfo
    var parts: [Int: UploadedPart] = [:]
}

/// The in-memory view of the store, rebuilt from disk at start-up.
struct Index {
    var buckets: [String: BucketEntry] = [:]
    var uploads: [String: UploadEntry] = [:]
}

/// Start-up: read every record, drop half-finished work, collect unreferenced shards.
enum Recovery {
    static func load(root: String) throws(ChunkStoreError) -> Index {
        var index = Index()
        for name in try Files.list("\(root)/buckets") {
            let path = "\(root)/buckets/\(name)"
            if name.hasSuffix(".tmp") { try Files.remove(path); continue }
            let b = try BucketInfo(decoding: try Files.read(path))
            index.buckets[b.name] = BucketEntry(info: b)
        }
        var referenced = Set<String>()
        for dir in try Files.list("\(root)/objects") {
            for name in try Files.list("\(root)/objects/\(dir)") {
                let path = "\(root)/objects/\(dir)/\(name)"
                if name.hasSuffix(".tmp") { try Files.remove(path); continue }
                let o = try ObjectInfo(decoding: try Files.read(path))
                guard index.buckets[o.bucket] != nil else { try Files.remove(path); continue }
                _ = index.buckets[o.bucket]!.insert(o)
                for p in o.parts { referenced.insert(p.shardID) }
            }
        }
        var parts: [(String, UploadedPart, String)] = []
        for name in try Files.list("\(root)/uploads") {
            let path = "\(root)/uploads/\(name)"
            if name.hasSuffix(".tmp") { try Files.remove(path); continue }
            if name.hasSuffix(".upload") {
                let u = try UploadInfo(decoding: try Files.read(path))
                index.uploads[u.uploadID] = UploadEntry(info: u)
            } else if name.hasSuffix(".part") {
                parts.append((String(name.split(separator: ".").first!), try UploadedPart(decoding: try Files.read(path)), path))
            }
        }
        for (uploadID, part, path) in parts {
            // A part whose shard an object already uses belongs to an upload that completed
            // just before a crash: finish that clean-up now.
            if index.uploads[uploadID] == nil || referenced.contains(part.part.shardID) {
                index.uploads[uploadID] = nil
                try Files.remove("\(root)/uploads/\(uploadID).upload")
                try Files.remove(path)
                continue
            }
            index.uploads[uploadID]!.parts[part.number] = part
        }
        for u in index.uploads.values { for p in u.parts.values { referenced.insert(p.part.shardID) } }
        for dir in try Files.list("\(root)/shards") {
            for name in try Files.list("\(root)/shards/\(dir)") where !referenced.contains(name) {
                try Files.remove("\(root)/shards/\(dir)/\(name)")
            }
        }
        return index
    }
}
