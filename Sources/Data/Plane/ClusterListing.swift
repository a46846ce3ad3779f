import Coordinator
import DataRPC
import Objects

extension DataPlane {
    /// One page of a bucket listing, merged from every node's index: each node answers its
    /// newest version of each key in byte order; a key's newest version across the answers
    /// wins (a delete marker hides it). A node's page that was cut short bounds how far the
    /// merge may go in one round (past its last key that node has not spoken yet); the next
    /// round starts there. Same semantics as a single node's `ObjectStore.list`.
    public func list(bucket: String, prefix: String, delimiter: String, marker: String, maxKeys: Int) async throws -> ListPage {
        let nodes = map.everyNode()
        var page = ListPage()
        var after = marker
        var count = 0
        var lastPrefix: [UInt8]?
        let p = Array(prefix.utf8), d = Array(delimiter.utf8), m = Array(marker.utf8)
        while true {
            let answers = await askList(nodes, bucket: bucket, prefix: prefix, after: after)
            guard !answers.isEmpty || nodes.isEmpty else { throw PlaneError("no node answered a listing of \(bucket)") }
            var horizon: [UInt8]?
            var newest: [[UInt8]: ListEntry] = [:]
            for (entries, truncated) in answers {
                if truncated, let last = entries.last.map({ Array($0.key.utf8) }), horizon.map({ last.lexicographicallyPrecedes($0) }) ?? true {
                    horizon = last
                }
                for e in entries {
                    let k = Array(e.key.utf8)
                    if let have = newest[k], have.version >= e.version { continue }
                    newest[k] = e
                }
            }
            let keys = newest.keys.filter { k in horizon.map { !$0.lexicographicallyPrecedes(k) } ?? true }.sorted { $0.lexicographicallyPrecedes($1) }
            for k in keys {
                let e = newest[k]!
                guard !e.deleted, let meta = try? VersionMeta(decoding: e.meta) else { continue }
                var rolled: [UInt8]?
                if !d.isEmpty, let end = Self.end(of: d, in: k, from: p.count) { rolled = Array(k[..<end]) }
                if let rolled {
                    if rolled == lastPrefix || rolled == m { continue }
                    if count == maxKeys { page.isTruncated = true; return page }
                    page.commonPrefixes.append(String(decoding: rolled, as: UTF8.self))
                    lastPrefix = rolled
                    page.nextMarker = page.commonPrefixes.last
                } else {
                    if count == maxKeys { page.isTruncated = true; return page }
                    page.objects.append(
                        ObjectInfo(
                            bucket: bucket, key: e.key, versionID: e.version.description, size: meta.size, etag: meta.etag,
                            contentType: meta.contentType, lastModifiedMs: meta.lastModifiedMs, userMetadata: meta.userMetadata,
                            parts: [PartRef(shardID: "", size: meta.size, etag: meta.etag)], checksums: meta.checksums))
                    page.nextMarker = e.key
                }
                count += 1
            }
            guard let horizon else { return page }
            after = String(decoding: horizon, as: UTF8.self)
        }
    }

    /// Every node's page after `after`; nodes that do not answer are left out (each key lives
    /// on a write quorum of nodes, so the others still show it).
    func askList(_ nodes: [PlacedNode], bucket: String, prefix: String, after: String) async -> [(entries: [ListEntry], truncated: Bool)] {
        let client = self.client
        return await withTaskGroup(of: ([ListEntry], Bool)?.self) { g in
            for n in nodes {
                guard let address = n.address else { continue }
                g.addTask {
                    let a = try? await client.withConnection(to: address, node: n.name) { c in
                        try await c.send(.list(bucket: bucket, prefix: prefix, after: after, limit: UInt32(DataWire.maxListing)))
                        return try await c.receive(timeout: client.requestTimeout)
                    }
                    if case .listing(let es, let truncated) = a { return (es, truncated) }
                    return nil
                }
            }
            var out: [(entries: [ListEntry], truncated: Bool)] = []
            for await case let a? in g { out.append(a) }
            return out
        }
    }

    /// End index (exclusive) of the first `needle` in `hay` at or after `from`.
    static func end(of needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard needle.count <= hay.count, from <= hay.count - needle.count else { return nil }
        for i in from...(hay.count - needle.count) where hay[i..<(i + needle.count)].elementsEqual(needle) { return i + needle.count }
        return nil
    }
}
