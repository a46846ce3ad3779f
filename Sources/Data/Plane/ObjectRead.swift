import Checksum
import Coordinator
import DataRPC
import Erasure
import Objects
import Support

/// The newest version of one key, found by `DataPlane.open`: its metadata, and its bytes read
/// from k of its holders, data shards first. A holder that fails mid-read is replaced by the
/// next one from the stripe where it stopped, and the stripe is rebuilt from parity.
public final class ObjectRead: @unchecked Sendable {
    let plane: DataPlane
    public let bucket: String
    public let key: String
    public let version: ObjectVersion
    let placed: Placed
    let holders: [(node: PlacedNode, shard: Int)]
    /// The version's scheme, as its holders name it (its metadata must agree).
    let k: Int, m: Int
    public internal(set) var meta = VersionMeta(
        size: 0, etag: "", contentType: "", lastModifiedMs: 0, userMetadata: [], checksums: [], k: 1, m: 0, blockSize: 1, stripes: 0)
    /// Records of stripe 0 by shard, sent with the holders' versions (a one-stripe object).
    var sent: [Int: (header: [UInt8], bytes: [UInt8])] = [:]

    init(
        plane: DataPlane, bucket: String, key: String, version: ObjectVersion, placed: Placed, holders: [(node: PlacedNode, shard: Int)], k: Int, m: Int
    ) {
        self.plane = plane; self.bucket = bucket; self.key = key; self.version = version; self.placed = placed; self.holders = holders
        self.k = k; self.m = m
    }

    func ref(_ shard: Int) -> ShardRef { ShardRef(bucket: bucket, key: key, version: version, shard: shard, k: k, m: m) }

    /// The version as the S3 layer describes objects.
    public var info: ObjectInfo {
        ObjectInfo(
            bucket: bucket, key: key, versionID: version.description, size: meta.size, etag: meta.etag, contentType: meta.contentType,
            lastModifiedMs: meta.lastModifiedMs, userMetadata: meta.userMetadata,
            parts: meta.partSizes.isEmpty
                ? [PartRef(shardID: "", size: meta.size, etag: meta.etag)] : meta.partSizes.map { PartRef(shardID: "", size: $0, etag: "") },
            checksums: meta.checksums)
    }

    /// The metadata, from the first holder that answers.
    func loadMeta() async throws {
        let client = plane.client
        var last: (any Error)?
        for h in holders {
            guard let address = h.node.address else { continue }
            let r = ref(h.shard)
            do {
                meta = try await client.withConnection(to: address, node: h.node.name) { c in
                    try await c.send(.getShard(r, first: 0, count: 0))
                    guard case .meta(let m) = try await c.receive(timeout: client.requestTimeout) else { throw PlaneError("no metadata from \(h.node.name)") }
                    guard try await c.receive(timeout: client.requestTimeout) == .end else { throw PlaneError("\(h.node.name) sent stripes unasked") }
                    return try VersionMeta(decoding: m)
                }
                guard meta.k == k && meta.m == m else { throw PlaneError("\(h.node.name)'s metadata says \(meta.k)+\(meta.m), its name \(k)+\(m)") }
                return
            } catch { last = error }
        }
        throw PlaneError("no holder of \(bucket)/\(key) \(version) gave its metadata: \(last.map { "\($0)" } ?? "none known")")
    }

    struct Source {
        var node: PlacedNode
        var shard: Int
        var link: DataConnection
    }

    /// Streams bytes `range` of the object to `body`, one block at a time.
    public func read(_ range: Range<Int>, _ body: ([UInt8]) async throws -> Void) async throws {
        guard !range.isEmpty else { return }
        let blockSize = meta.blockSize
        let decoder = StripeDecoder(code: try ReedSolomon(dataShards: meta.k, parityShards: meta.m))
        try await forEachStripe(range.lowerBound / blockSize, (range.upperBound - 1) / blockSize) { j, header, _, shards in
            let (block, corrupt) = try decoder.decode(header, shards: shards, checksums: shards.map { $0.map { Checksum.crc32c($0) } })
            if !corrupt.isEmpty { plane.logger.warning("corrupt shards rebuilt", metadata: ["key": "\(key)", "shards": "\(corrupt)"]) }
            let start = j * blockSize
            let lo = max(range.lowerBound, start) - start, hi = min(range.upperBound, start + block.count) - start
            guard lo <= hi else { throw PlaneError("\(bucket)/\(key): stripe \(j) holds \(block.count) bytes") }
            try await body(lo == 0 && hi == block.count ? block : Array(block[lo..<hi]))
        }
    }

    /// Stripes `first...last` as stored: index, header (parsed and as sent), and k+m slots with
    /// the k shards read (nil elsewhere). A holder whose file fails its checksum is told to drop
    /// it (repair writes it again).
    func forEachStripe(_ first: Int, _ last: Int, _ body: (Int, StripeHeader, [UInt8], [[UInt8]?]) async throws -> Void) async throws {
        let client = plane.client, timeout = client.requestTimeout
        let k = meta.k, total = meta.k + meta.m
        if first == 0, last == 0, meta.stripes == 1, sent.count >= k {
            var shards = [[UInt8]?](repeating: nil, count: total)
            let lowest = sent.sorted { $0.key < $1.key }.prefix(k)
            for (shard, record) in lowest where shard < total { shards[shard] = record.bytes }
            let headerBytes = lowest[lowest.startIndex].value.header
            var r = BinaryReader(headerBytes)
            if let header = try? StripeHeader(reading: &r), header.index == 0, shards.compactMap({ $0 }).count == k {
                return try await body(0, header, headerBytes, shards)
            }
        }
        var sources: [Source] = []
        var next = 0
        var sawCorrupt = false
        defer {
            for s in sources { s.link.close() }
            if sawCorrupt { plane.scheduleRepair(bucket: bucket, key: key) }
        }

        /// The next holder not yet read, streaming from `stripe` on.
        func replacement(from stripe: Int) async -> Source? {
            while next < holders.count {
                let h = holders[next]
                next += 1
                guard let address = h.node.address, !sources.contains(where: { $0.shard == h.shard }) else { continue }
                guard let c = try? await client.connect(to: address, node: h.node.name) else { continue }
                do {
                    try await c.send(.getShard(ref(h.shard), first: UInt32(stripe), count: UInt32(last - stripe + 1)))
                    guard case .meta = try await c.receive(timeout: timeout) else { throw PlaneError("no stream") }
                    return Source(node: h.node, shard: h.shard, link: c)
                } catch { c.close() }
            }
            return nil
        }

        while sources.count < k, let s = await replacement(from: first) { sources.append(s) }
        for j in first...last {
            var shards = [[UInt8]?](repeating: nil, count: total)
            var header: (StripeHeader, [UInt8])?
            var i = 0
            while i < sources.count {
                do {
                    switch try await sources[i].link.receive(timeout: timeout) {
                    case .stripe(let h, let bytes):
                        var r = BinaryReader(h)
                        let sh = try StripeHeader(reading: &r)
                        guard Int(sh.index) == j else { throw PlaneError("stripe \(sh.index) where \(j) was due") }
                        header = header ?? (sh, h)
                        shards[sources[i].shard] = bytes
                        i += 1
                    case .error(let e) where e.code == .corrupt:
                        sawCorrupt = true
                        plane.undo(.revert(ref(sources[i].shard)), at: sources[i].node)
                        throw e
                    default:
                        throw PlaneError("stream ended early")
                    }
                } catch {
                    plane.logger.info("shard read failed; reading another", metadata: ["node": "\(sources[i].node.name)", "error": "\(error)"])
                    sources[i].link.close()
                    sources.remove(at: i)
                    if let s = await replacement(from: j) { sources.append(s) }
                }
            }
            guard let header, sources.count >= k else {
                throw PlaneError("\(bucket)/\(key): only \(sources.count) of the \(k) shards needed answered at stripe \(j)")
            }
            try await body(j, header.0, header.1, shards)
        }
        // Each stream ends with `end`: connections that read theirs are in step and go back.
        let done = sources
        sources = []
        for s in done {
            if (try? await s.link.receive(timeout: timeout)) == .end, let address = s.node.address {
                client.release(s.link, to: address)
            } else {
                s.link.close()
            }
        }
    }
}
