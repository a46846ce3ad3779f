/// One page of a bucket listing (ListObjects v1 and v2 share it).
public struct ListPage: Sendable {
    public init() {}
    public var objects: [ObjectInfo] = []
    public var commonPrefixes: [String] = []
    public var isTruncated = false
    /// The last key or common prefix returned: where the next page starts (exclusive).
    public var nextMarker: String?
}

extension ObjectStore {
    /// Keys in byte order after `marker` that start with `prefix`; with a delimiter, keys that
    /// contain it after the prefix roll up into one common prefix, which counts as one entry.
    public func list(
        bucket: String, prefix: String = "", delimiter: String = "", marker: String = "",
        maxKeys: Int = 1000
    ) throws(ObjectError) -> ListPage {
        try state.withLock { (s: inout Index) throws(ObjectError) -> ListPage in
            guard s.buckets[bucket] != nil else { throw .noSuchBucket(bucket) }
            let keys = s.buckets[bucket]!.sortedKeys()
            let objects = s.buckets[bucket]!.objects
            var page = ListPage()
            let p = Array(prefix.utf8), d = Array(delimiter.utf8), m = Array(marker.utf8)
            // First key strictly after the marker and not before the prefix.
            let from = max(m, p)
            var lo = 0, hi = keys.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if keys[mid].bytes.lexicographicallyPrecedes(from) || (keys[mid].bytes == m) { lo = mid + 1 } else { hi = mid }
            }
            var count = 0
            var lastPrefix: [UInt8]? = nil
            var i = lo
            while i < keys.count {
                let k = keys[i].bytes
                i += 1
                guard k.starts(with: p) else { break }
                var rolled: [UInt8]? = nil
                if !d.isEmpty, let r = range(of: d, in: k, from: p.count) { rolled = Array(k[..<r]) }
                if let rolled {
                    if rolled == lastPrefix || rolled == m { continue }
                    if count == maxKeys { page.isTruncated = true; break }
                    page.commonPrefixes.append(String(decoding: rolled, as: UTF8.self))
                    lastPrefix = rolled
                    page.nextMarker = page.commonPrefixes.last
                } else {
                    if count == maxKeys { page.isTruncated = true; break }
                    page.objects.append(objects[keys[i - 1]]!)
                    page.nextMarker = page.objects.last!.key
                }
                count += 1
            }
            return page
        }
    }
}

/// End index (exclusive) of the first occurrence of `needle` in `hay` at or after `from`.
private func range(of needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
    guard needle.count <= hay.count else { return nil }
    var i = from
    while i + needle.count <= hay.count {
        if hay[i..<(i + needle.count)].elementsEqual(needle) { return i + needle.count }
        i += 1
    }
    return nil
}

private func max(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { a.lexicographicallyPrecedes(b) ? b : a }
