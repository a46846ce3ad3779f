import ChunkStore
import Files

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
    /// Object records start-up set aside under `quarantine/` (paths there), with the reason.
    var quarantined: [(path: String, reason: String)] = []
}

/// Start-up: read every record, drop half-finished work, collect unreferenced shards. An object
/// record that cannot be read or whose bucket is missing is moved to `quarantine/`, never deleted,
/// and the shards it names are kept.
enum Recovery {
    static func quarantine(_ path: String, name: String, because reason: String, root: String, into index: inout Index) throws(FileError) {
        var dest = "\(root)/quarantine/\(name)", n = 1
        while Files.exists(dest) { dest = "\(root)/quarantine/\(name).\(n)"; n += 1 }
        try Files.move(path, to: dest)
        index.quarantined.append((dest, reason))
    }

    static func load(root: String) throws(FileError) -> Index {
        var index = Index()
        var referenced = Set<String>()
        // Shards named by records quarantined on an earlier start stay with them.
        for name in try Files.list("\(root)/quarantine") {
            if let o = try? ObjectInfo(decoding: try Files.read("\(root)/quarantine/\(name)")) {
                for p in o.parts { referenced.insert(p.shardID) }
            }
        }
        for name in try Files.list("\(root)/buckets") {
            let path = "\(root)/buckets/\(name)"
            if name.hasSuffix(".tmp") { try Files.remove(path); continue }
            let b = try Files.read(path, decoding: BucketInfo.init(decoding:))
            index.buckets[b.name] = BucketEntry(info: b)
        }
        for dir in try Files.list("\(root)/objects") {
            for name in try Files.list("\(root)/objects/\(dir)") {
                let path = "\(root)/objects/\(dir)/\(name)"
                if name.hasSuffix(".tmp") { try Files.remove(path); continue }
                let o: ObjectInfo
                do throws(FileError) { o = try Files.read(path, decoding: ObjectInfo.init(decoding:)) } catch {
                    try quarantine(path, name: name, because: "unreadable: \(error)", root: root, into: &index)
                    continue
                }
                guard index.buckets[o.bucket] != nil else {
                    // Its bucket record is gone (damaged or deleted by hand): keep the object,
                    // record and shards, out of the way, for an operator to look at.
                    for p in o.parts { referenced.insert(p.shardID) }
                    try quarantine(path, name: name, because: "bucket \(o.bucket) is missing (key \(o.key))", root: root, into: &index)
                    continue
                }
                _ = index.buckets[o.bucket]!.insert(o)
                for p in o.parts { referenced.insert(p.shardID) }
            }
        }
        var parts: [(String, UploadedPart, String)] = []
        for name in try Files.list("\(root)/uploads") {
            let path = "\(root)/uploads/\(name)"
            if name.hasSuffix(".tmp") { try Files.remove(path); continue }
            if name.hasSuffix(".upload") {
                let u = try Files.read(path, decoding: UploadInfo.init(decoding:))
                index.uploads[u.uploadID] = UploadEntry(info: u)
            } else if name.hasSuffix(".part") {
                parts.append((String(name.split(separator: ".").first!), try Files.read(path, decoding: UploadedPart.init(decoding:)), path))
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
