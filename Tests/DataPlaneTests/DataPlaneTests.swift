import Coordinator
import DataPlane
import DataRPC
import Determinism
import Foundation
import Logging
import Objects
import Security
import ShardStore
import Synchronization
import Testing

struct TestSealer: Sealer {
    let key = Sodium.randomBytes(Sodium.AEAD.keyBytes)
    func seal(_ p: [UInt8]) -> [UInt8] { (try? Sodium.AEAD.seal(p, key: key)) ?? [] }
    func open(_ s: [UInt8]) -> [UInt8]? { try? Sodium.AEAD.open(s, key: key) }
}

/// Every key on the same k+m nodes (a real layout spreads partitions; these tests are about one).
struct OnePartition: PlacementMap {
    let placed: Placed
    func placement(bucket: String, key: String) throws -> Placed? { placed }
    func everyNode() -> [PlacedNode] { placed.nodes }
}

/// A placement that changes, as a layout does.
final class MovingPartition: PlacementMap {
    let placed: Mutex<Placed>
    init(_ p: Placed) { placed = Mutex(p) }
    func placement(bucket: String, key: String) throws -> Placed? { placed.withLock { $0 } }
    func everyNode() -> [PlacedNode] { placed.withLock { $0.consulted } }
}

/// k+m data servers on loopback, each over its own shard store, and a plane writing through them.
/// A partition whose addresses the node learns between its first look and the next.
final class LearningPartition: PlacementMap {
    let looks = Mutex(0)
    let first: Placed, then: Placed
    init(first: Placed, then: Placed) { self.first = first; self.then = then }
    func placement(bucket: String, key: String) throws -> Placed? {
        looks.withLock { n in
            n += 1
            return n == 1 ? first : then
        }
    }
    func everyNode() -> [PlacedNode] { then.nodes }
}

final class Cluster {
    let root = NSTemporaryDirectory() + "stacks-plane-\(UInt64.random(in: 0 ... .max))"
    let sealer = TestSealer()
    var servers: [DataServer?] = []
    var addresses: [String] = []
    let k: Int, m: Int

    init(k: Int, m: Int, spare: Int = 0) async throws {
        self.k = k; self.m = m
        for i in 0..<(k + m + spare) {
            let s = DataServer(
                host: "127.0.0.1", port: 0, backend: try ShardStore(root: "\(root)/n\(i)"), sealer: sealer, logger: Logger(label: "test"))
            addresses.append("127.0.0.1:\(try await s.start())")
            servers.append(s)
        }
    }

    func node(_ i: Int) -> PlacedNode { PlacedNode(name: "n\(i)", address: addresses[i]) }

    /// A coordinating node; `skewMs` sets its clock off the others'.
    func plane(_ map: (any PlacementMap)? = nil, skewMs: Int64 = 0, settings: PlaneSettings = PlaneSettings()) -> DataPlane {
        DataPlane(
            client: DataClient(sealer: sealer), map: map ?? OnePartition(placed: Placed(k: k, m: m, nodes: (0..<(k + m)).map(node))),
            settings: settings, wallMs: { Int64(Date().timeIntervalSince1970 * 1000) + skewMs }, logger: Logger(label: "test"))
    }

    /// What node `i` holds of a key, newest first.
    func held(_ i: Int, _ key: String) async throws -> [Held] {
        let answer = try await DataClient(sealer: sealer).withConnection(to: addresses[i]) { conn in
            try await conn.send(.held(bucket: "b", key: key))
            return try await conn.receive(timeout: .seconds(10))
        }
        guard case .versions(let hs) = answer else { throw PlaneError("no answer from n\(i)") }
        return hs
    }

    /// The server again, on its old port and shards (a node restarted).
    func restart(_ i: Int) async throws {
        let port = Int(addresses[i].split(separator: ":")[1])!
        let s = DataServer(host: "127.0.0.1", port: port, backend: try ShardStore(root: "\(root)/n\(i)"), sealer: sealer, logger: Logger(label: "test"))
        try await s.start()
        servers[i] = s
    }

    func stop(_ i: Int) async {
        await servers[i]?.stop()
        servers[i] = nil
    }

    func shutdown() async {
        for i in servers.indices { await stop(i) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite struct DataPlaneTests {
    static func body(_ n: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    static func meta(_ body: [UInt8]) -> VersionMeta {
        VersionMeta(
            size: body.count, etag: Digest.md5(body).hex, contentType: "application/x-test", lastModifiedMs: 1, userMetadata: [Metadatum("a", "b")],
            checksums: [], k: 0, m: 0, blockSize: 0, stripes: 0)
    }

    func put(_ plane: DataPlane, _ key: String, _ body: [UInt8], pieces: Int = 3) async throws {
        let w = try await plane.put(bucket: "b", key: key, size: body.count)
        let step = max(1, body.count / pieces)
        var at = 0
        while at < body.count {
            try await w.append(Array(body[at..<min(body.count, at + step)]))
            at += step
        }
        try await w.commit(Self.meta(body))
    }

    func get(_ plane: DataPlane, _ key: String, _ range: Range<Int>? = nil) async throws -> [UInt8]? {
        guard let r = try await plane.open(bucket: "b", key: key) else { return nil }
        var out: [UInt8] = []
        try await r.read(range ?? 0..<r.meta.size) { out += $0 }
        return out
    }

    /// 4+2 over six servers: bodies of many sizes (empty, under a block, several blocks) come
    /// back byte-exact, whole and in ranges; with any two servers gone every read still does.
    @Test func objectsSurviveAnyTwoOfSixServersGone() async throws {
        let c = try await Cluster(k: 4, m: 2)
        let plane = c.plane()
        let sizes = [0, 1, 4097, (1 << 20) - 3, (3 << 20) + 17]
        var bodies: [String: [UInt8]] = [:]
        for (i, n) in sizes.enumerated() {
            bodies["k\(i)"] = Self.body(n, seed: UInt64(i))
            try await put(plane, "k\(i)", bodies["k\(i)"]!)
        }
        for (key, body) in bodies {
            let got = try await get(plane, key)
            #expect(got == body, "\(key) of \(body.count) bytes")
            if body.count > 10 {
                let range = 3..<(body.count - 5)
                let part = try await get(plane, key, range)
                #expect(part.map { Array($0) } == Array(body[range]), "\(key) range")
            }
        }
        let r = try await plane.open(bucket: "b", key: "k2")
        #expect(r?.meta.etag == Digest.md5(bodies["k2"]!).hex && r?.info.contentType == "application/x-test")
        await c.stop(0)  // a data shard's node
        await c.stop(4)  // a parity node
        for (key, body) in bodies {
            let got = try await get(plane, key)
            #expect(got == body, "\(key) with two servers gone")
        }
        await c.shutdown()
    }

    /// The newest write wins, a delete hides the key, a write goes on with one node of three
    /// down, and a write that cannot reach its quorum fails and leaves the previous version
    /// what every read finds once the nodes are back.
    @Test func overwriteDeleteAndFailedWrite() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let plane = c.plane()
        let (v1, v2, v3) = (Self.body(5000, seed: 1), Self.body(7000, seed: 2), Self.body(9000, seed: 3))
        try await put(plane, "key", v1)
        try await put(plane, "key", v2)
        #expect(try await get(plane, "key") == v2)
        try await plane.delete(bucket: "b", key: "key")
        #expect(try await get(plane, "key") == nil)
        try await put(plane, "key", v1)
        await c.stop(2)
        try await put(plane, "key", v2)
        #expect(try await get(plane, "key") == v2, "written and read with one node of three down")
        await c.stop(1)
        await #expect(throws: PlaneError.self) { try await put(plane, "key", v3) }
        try await c.restart(1)
        try await c.restart(2)
        #expect(try await get(plane, "key") == v2, "the failed write left nothing visible")
        await c.shutdown()
    }

    /// A node whose clock is behind still overwrites and deletes what a node ahead wrote, and
    /// the node ahead then overwrites it again: each write is newer than the version it found.
    @Test func aNodeWhoseClockIsBehindStillOverwrites() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let (ahead, behind) = (c.plane(skewMs: 20_000), c.plane(skewMs: -20_000))
        let (v1, v2, v3) = (Self.body(3000, seed: 1), Self.body(4000, seed: 2), Self.body(5000, seed: 3))
        try await put(ahead, "key", v1)
        try await put(behind, "key", v2)
        #expect(try await get(ahead, "key") == v2, "the overwrite through the node 40 s behind wins")
        try await put(ahead, "key", v3)
        #expect(try await get(behind, "key") == v3)
        try await behind.delete(bucket: "b", key: "key")
        #expect(try await get(ahead, "key") == nil, "the delete through the node behind wins")
        await c.shutdown()
    }

    /// An upload begun through one node takes parts through others, lists them and itself
    /// through any, completes through a third into one object whose parts keep their sizes,
    /// and is gone everywhere afterwards; a stale part list is refused and an abort forgets.
    @Test func multipartUploadsSpanNodes() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let (a, b, d) = (c.plane(), c.plane(), c.plane())
        let (p1, p2) = (Self.body(5 << 20, seed: 1), Self.body(1234, seed: 2))
        let u = try await a.createUpload(bucket: "b", key: "big/object", contentType: "text/x", userMetadata: [Metadatum("m", "1")])
        func part(_ plane: DataPlane, _ n: Int, _ body: [UInt8]) async throws -> String {
            let w = try await plane.putPart(bucket: "b", uploadID: u.uploadID, number: n, size: body.count)
            try await w.append(body)
            var meta = Self.meta(body)
            meta.userMetadata = []
            try await w.commit(meta)
            return meta.etag
        }
        let e1 = try await part(b, 1, p1), e2 = try await part(d, 2, p2)
        _ = try await part(a, 3, p2)  // uploaded, never named: dropped at completion
        #expect(try await a.parts(bucket: "b", uploadID: u.uploadID).map(\.number) == [1, 2, 3])
        let listed = try await d.uploads(bucket: "b", prefix: "big/", keyMarker: "", uploadIDMarker: "", limit: 10)
        #expect(listed.uploads.map(\.uploadID) == [u.uploadID] && listed.uploads.first?.key == "big/object" && !listed.truncated)
        await #expect(throws: ObjectError.invalidPart(2)) {
            _ = try await d.completeUpload(bucket: "b", key: "big/object", uploadID: u.uploadID, parts: [(1, e1), (2, e1)], nowMs: 1)
        }
        let info = try await d.completeUpload(bucket: "b", key: "big/object", uploadID: u.uploadID, parts: [(1, e1), (2, e2)], nowMs: 1)
        #expect(info.etag.hasSuffix("-2"))
        let r = try await a.open(bucket: "b", key: "big/object")
        #expect(r?.info.parts.map(\.size) == [p1.count, p2.count] && r?.info.contentType == "text/x" && r?.info.etag == info.etag)
        #expect(try await get(b, "big/object") == p1 + p2)
        await #expect(throws: ObjectError.noSuchUpload(u.uploadID)) { _ = try await b.upload(u.uploadID, bucket: "b", key: "big/object") }
        #expect(try await b.parts(bucket: "b", uploadID: u.uploadID).isEmpty, "the parts went with the upload")
        let gone = try await a.createUpload(bucket: "b", key: "k", contentType: "", userMetadata: [])
        let w = try await d.putPart(bucket: "b", uploadID: gone.uploadID, number: 1, size: p2.count)
        try await w.append(p2)
        try await w.commit(Self.meta(p2))
        try await b.abortUpload(bucket: "b", key: "k", uploadID: gone.uploadID)
        #expect(try await a.uploads(bucket: "b", prefix: "", keyMarker: "", uploadIDMarker: "", limit: 10).uploads.isEmpty)
        #expect(try await a.parts(bucket: "b", uploadID: gone.uploadID).isEmpty)
        await c.shutdown()
    }

    /// Version metadata keeps a multipart object's part sizes, refuses sizes that do not add up
    /// to the object's, and still reads format 1 (shard files written before part sizes).
    @Test func versionMetaCarriesPartSizes() throws {
        var meta = Self.meta(Self.body(5000, seed: 1))
        (meta.k, meta.m, meta.blockSize, meta.stripes, meta.partSizes) = (2, 1, 4096, 2, [3000, 2000])
        #expect(try VersionMeta(decoding: meta.encoded()) == meta)
        var wrong = meta
        wrong.partSizes = [3000, 1999]
        #expect(throws: (any Error).self) { try VersionMeta(decoding: wrong.encoded()) }
        meta.partSizes = []
        var v1 = meta.encoded().dropLast(4)
        v1[v1.startIndex] = 1
        #expect(try VersionMeta(decoding: Array(v1)) == meta)
    }

    /// Listings merge every node's index: newest version per key, delete markers hide keys,
    /// delimiters roll up, pages follow each other with the marker; a restarted node rebuilds
    /// its index from disk, and a node down leaves listings complete.
    @Test func listingsMergeAcrossNodes() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let plane = c.plane()
        var live: Set<String> = []
        for i in 0..<40 {
            let key = i % 3 == 0 ? "dir\(i % 4)/f\(i)" : "top\(i)"
            try await put(plane, key, Self.body(10 + i, seed: UInt64(i)), pieces: 1)
            live.insert(key)
        }
        for key in ["top1", "dir0/f12", "top2"] {
            try await plane.delete(bucket: "b", key: key)
            live.remove(key)
        }
        try await put(plane, "top4", Self.body(99, seed: 99))
        func all(delimiter: String, pageSize: Int) async throws -> (keys: [String], prefixes: [String], sizes: [String: Int]) {
            var keys: [String] = [], prefixes: [String] = [], sizes: [String: Int] = [:]
            var marker = ""
            for _ in 0..<100 {
                let page = try await plane.list(bucket: "b", prefix: "", delimiter: delimiter, marker: marker, maxKeys: pageSize)
                keys += page.objects.map(\.key)
                prefixes += page.commonPrefixes
                for o in page.objects { sizes[o.key] = o.size }
                guard page.isTruncated else { break }
                marker = page.nextMarker!
            }
            return (keys, prefixes, sizes)
        }
        let byteOrder: ([String]) -> [String] = { $0.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) } }
        let flat = try await all(delimiter: "", pageSize: 7)
        #expect(flat.keys == byteOrder(Array(live)))
        #expect(flat.sizes["top4"] == 99, "the newest version's size")
        let rolled = try await all(delimiter: "/", pageSize: 3)
        #expect(rolled.keys == byteOrder(live.filter { !$0.contains("/") }))
        #expect(rolled.prefixes == ["dir0/", "dir1/", "dir2/", "dir3/"])
        await c.stop(1)
        try await c.restart(1)
        await c.stop(2)
        let degraded = try await all(delimiter: "", pageSize: 1000)
        #expect(degraded.keys == byteOrder(Array(live)), "one node down, one restarted: the listing is complete")
        await c.shutdown()
    }

    /// A node that lost its disk gets its shards back, rebuilt from the others byte for byte:
    /// with another node then down, reads come out exact through the rebuilt shards. A delete
    /// marker a node missed is written to it. A repaired key is healthy afterwards.
    @Test func repairRebuildsWhatANodeLost() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let plane = c.plane()
        let bodies = ["empty": [UInt8](), "small": Self.body(5000, seed: 5), "big": Self.body((3 << 20) + 7, seed: 6)]
        for (k, b) in bodies { try await put(plane, k, b) }
        await c.stop(2)
        // Moved away whole (a rename), as the stopped server's store may still be closing its files.
        try FileManager.default.moveItem(atPath: "\(c.root)/n2", toPath: "\(c.root)/n2-lost")
        try await c.restart(2)
        for k in bodies.keys {
            let first = await plane.repair(bucket: "b", key: k)
            #expect(first == .checked(written: 1, missing: 0, marker: false), "\(k)")
            let second = await plane.repair(bucket: "b", key: k)
            #expect(second == .checked(written: 0, missing: 0, marker: false), "\(k)")
        }
        await c.stop(0)
        for (k, b) in bodies {
            let got = try await get(plane, k)
            #expect(got == b, "\(k) read through the rebuilt shard")
        }
        try await c.restart(0)

        await c.stop(1)
        try await plane.delete(bucket: "b", key: "small")
        try await c.restart(1)
        #expect(await plane.repair(bucket: "b", key: "small") == .checked(written: 1, missing: 0, marker: true))
        #expect(try await c.held(1, "small").first?.deleted == true, "the node that missed the delete holds the marker now")
        await c.shutdown()
    }

    /// A deleted key's marker and the versions under it go from every node once the marker is
    /// older than the grace, on the repairer's pass (never a read repair's), and only when
    /// every slot's node holds it; the key can be written again afterwards.
    @Test func deleteMarkersArePurgedAfterTheirGrace() async throws {
        let c = try await Cluster(k: 2, m: 1)
        var quick = PlaneSettings()
        quick.markerGrace = .seconds(1)
        // The purging node's clock is a minute on: every marker is past its grace there.
        let plane = c.plane(), purging = c.plane(skewMs: 60_000, settings: quick)
        try await put(plane, "gone", Self.body(5000, seed: 7))
        try await put(plane, "gone", Self.body(6000, seed: 8))
        try await put(plane, "kept", Self.body(100, seed: 9))
        try await plane.delete(bucket: "b", key: "gone")
        #expect(await plane.repair(bucket: "b", key: "gone", onlyAs: "n0") == .checked(written: 0, missing: 0, marker: true), "within the grace")
        #expect(await purging.repair(bucket: "b", key: "gone") == .checked(written: 0, missing: 0, marker: true), "a read repair")
        await c.stop(2)
        #expect(await purging.repair(bucket: "b", key: "gone", onlyAs: "n0") == .checked(written: 0, missing: 1, marker: true), "a node silent")
        try await c.restart(2)
        #expect(try await c.held(0, "gone").count == 3, "two versions and the marker")
        #expect(await purging.repair(bucket: "b", key: "gone", onlyAs: "n1") == .notMine)
        #expect(await purging.repair(bucket: "b", key: "gone", onlyAs: "n0") == .purged)
        for i in 0..<3 {
            #expect(try await c.held(i, "gone").isEmpty, "n\(i)")
            let dirs = try FileManager.default.subpathsOfDirectory(atPath: "\(c.root)/n\(i)/shards").filter { $0.split(separator: "/").count == 2 }
            #expect(dirs.count == 1, "only kept's key directory is left on n\(i): \(dirs)")
        }
        #expect(await purging.repair(bucket: "b", key: "gone", onlyAs: "n0") == .absent)
        #expect(try await plane.list(bucket: "b", prefix: "", delimiter: "", marker: "", maxKeys: 10).objects.map(\.key) == ["kept"])
        let again = Self.body(700, seed: 10)
        try await put(plane, "gone", again)
        #expect(try await get(plane, "gone") == again)
        await c.shutdown()
    }

    /// A layout change moves slot 2 from n2 to n3: while n3 lacks its shard, reads find it on
    /// n2 (consulted as an earlier holder) even with n0 down; repair writes n3 its shard; then
    /// n2's copy is known to be moved away (and not before), and reads need n2 no more.
    @Test func aMovedSlotIsReadFromItsEarlierNodeUntilRepaired() async throws {
        let c = try await Cluster(k: 2, m: 1, spare: 1)
        let map = MovingPartition(Placed(k: 2, m: 1, nodes: [c.node(0), c.node(1), c.node(2)], version: 1))
        let plane = c.plane(map)
        let body = Self.body((2 << 20) + 9, seed: 8)
        try await put(plane, "moved", body)
        map.placed.withLock { $0 = Placed(k: 2, m: 1, nodes: [c.node(0), c.node(1), c.node(3)], version: 2, earlier: [c.node(2)]) }
        let n2 = try ShardStore(root: "\(c.root)/n2")
        let held = try n2.held(bucket: "b", key: "moved")
        #expect(held.map(\.shard) == [2])
        #expect(await plane.movedAway(bucket: "b", key: "moved", mine: held) == false, "n3 has nothing yet")
        await c.stop(0)
        #expect(try await get(plane, "moved") == body, "n1 and the earlier n2 serve while n0 is down")
        try await c.restart(0)
        // The degraded read asked for a read repair too: one of the two wrote n3's shard.
        let outcome = await plane.repair(bucket: "b", key: "moved")
        guard case .checked(_, let missing, false) = outcome, missing == 0 else { throw PlaneError("repair: \(outcome)") }
        #expect(try ShardStore(root: "\(c.root)/n3").held(bucket: "b", key: "moved").map(\.shard) == [2])
        #expect(await plane.movedAway(bucket: "b", key: "moved", mine: held) == true)
        await c.stop(2)
        await c.stop(0)
        #expect(try await get(plane, "moved") == body, "n1 and n3 serve without n2")
        await c.shutdown()
    }

    /// A node that knows the layout but not yet its peers' addresses (it just started) reads
    /// once they are known a moment later, instead of answering 503 at once.
    @Test func aReadWaitsBrieflyForAddressesNotKnownYet() async throws {
        let c = try await Cluster(k: 2, m: 1)
        let full = Placed(k: 2, m: 1, nodes: (0..<3).map(c.node))
        var unknown = full
        unknown.nodes[1].address = nil
        unknown.nodes[2].address = nil
        let body = Self.body(4000, seed: 12)
        try await put(c.plane(OnePartition(placed: full)), "fresh", body)
        #expect(try await get(c.plane(LearningPartition(first: unknown, then: full)), "fresh") == body, "known by the second look")
        await #expect(throws: PlaneError.self, "still unknown after the wait") {
            try await get(c.plane(OnePartition(placed: unknown)), "fresh")
        }
        await c.shutdown()
    }

    /// A copy left on a node the layout no longer places the key on (it was away while the
    /// data moved), of a key since deleted and purged from its slots, may go; not while a
    /// slot's node is silent, and not while an earlier layout is still consulted.
    @Test func anOldCopyNoSlotKnowsOfMayGo() async throws {
        let c = try await Cluster(k: 2, m: 1, spare: 1)
        let map = MovingPartition(Placed(k: 2, m: 1, nodes: [c.node(0), c.node(1), c.node(2)], version: 1))
        var quick = PlaneSettings()
        quick.markerGrace = .seconds(1)
        let plane = c.plane(map), purging = c.plane(map, skewMs: 60_000, settings: quick)
        try await put(plane, "old", Self.body(3000, seed: 11))
        let held = try await c.held(2, "old")
        map.placed.withLock { $0 = Placed(k: 2, m: 1, nodes: [c.node(0), c.node(1), c.node(3)], version: 2) }
        #expect(await plane.movedAway(bucket: "b", key: "old", mine: held) == false, "the version is alive and n3 lacks its shard")
        try await plane.delete(bucket: "b", key: "old")
        #expect(await purging.repair(bucket: "b", key: "old", onlyAs: "n0") == .purged)
        map.placed.withLock { $0.earlier = [c.node(2)] }
        #expect(await plane.movedAway(bucket: "b", key: "old", mine: held) == false, "while the earlier layout is consulted")
        map.placed.withLock { $0.earlier = [] }
        await c.stop(3)
        #expect(await plane.movedAway(bucket: "b", key: "old", mine: held) == false, "a slot's node silent")
        try await c.restart(3)
        #expect(await plane.movedAway(bucket: "b", key: "old", mine: held) == true)
        await c.shutdown()
    }
}
