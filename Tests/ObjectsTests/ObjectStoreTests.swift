import ChunkStore
import Files
import Foundation
import Security
import Testing

@testable import Objects

@Suite struct ObjectStoreTests {
    let root = NSTemporaryDirectory() + "objects-\(UUID().uuidString)"

    func open() throws -> ObjectStore { try ObjectStore(root: root, clock: { 1_700_000_000_000 }) }

    func put(_ store: ObjectStore, _ bucket: String, _ key: String, _ body: [UInt8]) throws -> ObjectInfo {
        let (id, w) = try store.newShard()
        try w.append(body); try w.finish()
        let etag = Digest.md5(body).hex
        return try store.putObject(
            bucket: bucket, key: key, parts: [PartRef(shardID: id, size: body.count, etag: etag)],
            etag: etag, contentType: "text/plain", userMetadata: [Metadatum("a", "b")], checksums: [])
    }

    func read(_ store: ObjectStore, _ info: ObjectInfo) throws -> [UInt8] {
        var out: [UInt8] = []
        for p in info.parts { try store.openShard(p).forEachSlice(of: 0..<p.size) { out.append(contentsOf: $0) } }
        return out
    }

    @Test func putOverwriteDeleteSurviveRestart() throws {
        var store = try open()
        try store.createBucket("photos")
        #expect(throws: ObjectError.bucketAlreadyOwnedByYou("photos")) { try store.createBucket("photos") }
        #expect(throws: ObjectError.invalidBucketName("A")) { try store.createBucket("A") }
        _ = try put(store, "photos", "a/1", Array("one".utf8))
        _ = try put(store, "photos", "a/1", Array("uno".utf8))
        _ = try put(store, "photos", "../../etc/passwd", Array("not a path".utf8))
        #expect(throws: ObjectError.keyTooLong(1025)) { try put(store, "photos", String(repeating: "k", count: 1025), [1]) }
        #expect(throws: ObjectError.bucketNotEmpty("photos")) { try store.deleteBucket("photos") }

        store = try open()  // restart: everything comes back from disk
        let info = try store.head(bucket: "photos", key: "a/1")
        #expect(try read(store, info) == Array("uno".utf8))
        #expect(info.userMetadata == [Metadatum("a", "b")])
        #expect(try read(store, store.head(bucket: "photos", key: "../../etc/passwd")) == Array("not a path".utf8))
        #expect(!FileManager.default.fileExists(atPath: root + "/etc"))
        // The overwritten version's shard was removed: one shard per live object.
        let shardFiles = try Files.list(root + "/shards").flatMap { try Files.list(root + "/shards/" + $0) }
        #expect(shardFiles.count == 2)

        try store.deleteObject(bucket: "photos", key: "a/1")
        try store.deleteObject(bucket: "photos", key: "../../etc/passwd")
        #expect(throws: ObjectError.noSuchKey("a/1")) { try store.head(bucket: "photos", key: "a/1") }
        try store.deleteBucket("photos")
        store = try open()
        #expect(store.listBuckets().isEmpty)
    }

    @Test func unreferencedShardsAreCollectedAtStart() throws {
        var store = try open()
        try store.createBucket("b12")
        let (_, w) = try store.newShard()
        try w.append([1, 2, 3]); try w.finish()  // never committed: a crash mid-PUT
        store = try open()
        let shardFiles = try Files.list(root + "/shards").flatMap { try Files.list(root + "/shards/" + $0) }
        #expect(shardFiles.isEmpty)
        _ = store
    }

    @Test func listingWithDelimiterAndPages() throws {
        let store = try open()
        try store.createBucket("list")
        for k in ["a", "b/1", "b/2", "c/x/1", "d", "é", "e\u{301}"] { _ = try put(store, "list", k, [0]) }
        let all = try store.list(bucket: "list")
        #expect(all.objects.count == 7)  // canonically equivalent keys stay distinct
        let top = try store.list(bucket: "list", delimiter: "/")
        #expect(top.objects.map(\.key) == ["a", "d", "e\u{301}", "é"])
        #expect(top.commonPrefixes == ["b/", "c/"])
        var marker = "", seen: [String] = []
        while true {
            let page = try store.list(bucket: "list", delimiter: "/", marker: marker, maxKeys: 2)
            seen += page.objects.map(\.key) + page.commonPrefixes
            guard page.isTruncated else { break }
            marker = page.nextMarker!
        }
        #expect(seen.sorted() == ["a", "b/", "c/", "d", "e\u{301}", "é"].sorted())
        #expect(try store.list(bucket: "list", prefix: "b/").objects.map(\.key) == ["b/1", "b/2"])
        #expect(try store.list(bucket: "list", prefix: "c/", delimiter: "/").commonPrefixes == ["c/x/"])
    }

    @Test func multipartAssemblesPartsAndSurvivesRestart() throws {
        var store = try open()
        try store.createBucket("mp1")
        let u = try store.createUpload(bucket: "mp1", key: "big", contentType: "application/x", userMetadata: [])
        let p1 = [UInt8](repeating: 7, count: 5 << 20), p2 = Array("tail".utf8)
        var etags: [String] = []
        for (n, body) in [(1, p1), (2, p2)] {
            let (id, w) = try store.newShard()
            try w.append(body); try w.finish()
            let etag = Digest.md5(body).hex
            etags.append(etag)
            try store.putPart(uploadID: u.uploadID, bucket: "mp1", key: "big", number: n, part: PartRef(shardID: id, size: body.count, etag: etag))
        }
        #expect(try store.listParts(uploadID: u.uploadID, bucket: "mp1", key: "big").map(\.number) == [1, 2])
        #expect(throws: ObjectError.invalidPartOrder) {
            try store.completeUpload(uploadID: u.uploadID, bucket: "mp1", key: "big", parts: [(2, etags[1]), (1, etags[0])])
        }
        let info = try store.completeUpload(uploadID: u.uploadID, bucket: "mp1", key: "big", parts: [(1, "\"\(etags[0])\""), (2, etags[1])])
        let expected = Digest.md5(bytes(fromHex: etags[0])! + bytes(fromHex: etags[1])!).hex + "-2"
        #expect(info.etag == expected)
        store = try open()
        #expect(try read(store, store.head(bucket: "mp1", key: "big")) == p1 + p2)
        #expect(throws: ObjectError.noSuchUpload(u.uploadID)) { try store.listParts(uploadID: u.uploadID, bucket: "mp1", key: "big") }
    }

    @Test func uploadsPerBucketAreBounded() throws {
        let store = try ObjectStore(root: root, maxUploadsPerBucket: 3, clock: { 1_700_000_000_000 })
        try store.createBucket("full")
        try store.createBucket("other")
        let ids = try (0..<3).map { try store.createUpload(bucket: "full", key: "k\($0)", contentType: "x", userMetadata: []).uploadID }
        #expect(throws: ObjectError.tooManyUploads(bucket: "full", limit: 3)) {
            try store.createUpload(bucket: "full", key: "k3", contentType: "x", userMetadata: [])
        }
        _ = try store.createUpload(bucket: "other", key: "k", contentType: "x", userMetadata: [])  // per bucket
        try store.abortUpload(uploadID: ids[0], bucket: "full", key: "k0")
        _ = try store.createUpload(bucket: "full", key: "k3", contentType: "x", userMetadata: [])  // room again
    }
}
