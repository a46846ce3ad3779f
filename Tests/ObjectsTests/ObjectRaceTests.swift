import ChunkStore
import Dispatch
import Files
import Foundation
import Security
import Synchronization
import Testing

@testable import Objects

/// Multipart completion racing abort, a re-sent part or a second completion, a PUT racing its
/// bucket's deletion, and what start-up does with records it cannot place.
@Suite struct ObjectRaceTests {
    let root = NSTemporaryDirectory() + "objects-race-\(UUID().uuidString)"

    func open() throws -> ObjectStore { try ObjectStore(root: root, clock: { 1_700_000_000_000 }) }

    func shard(_ store: ObjectStore, _ body: [UInt8]) throws -> PartRef {
        let (id, w) = try store.newShard()
        try w.append(body); try w.finish()
        return PartRef(shardID: id, size: body.count, etag: Digest.md5(body).hex)
    }

    func read(_ store: ObjectStore, _ info: ObjectInfo) throws -> [UInt8] {
        var out: [UInt8] = []
        for p in info.parts { try store.openShard(p).forEachSlice(of: 0..<p.size) { out.append(contentsOf: $0) } }
        return out
    }

    /// Runs `a` and `b` at once on two threads; returns whether each returned without throwing.
    func race(_ a: @escaping @Sendable () throws -> Void, _ b: @escaping @Sendable () throws -> Void) -> (Bool, Bool) {
        let ok = Mutex([false, false])
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let fine = (try? (i == 0 ? a : b)()) != nil
            ok.withLock { $0[i] = fine }
        }
        return ok.withLock { ($0[0], $0[1]) }
    }

    @Test func completionIsAtomicWithAbortResentPartAndSecondCompletion() throws {
        let store = try open()
        try store.createBucket("mpu")
        for round in 0..<150 {
            let key = "k\(round % 3)"
            let body = Array("round \(round)".utf8)
            let u = try store.createUpload(bucket: "mpu", key: key, contentType: "x", userMetadata: [])
            let part = try shard(store, body)
            try store.putPart(uploadID: u.uploadID, bucket: "mpu", key: key, number: 1, part: part)
            let complete: @Sendable () throws -> Void = {
                _ = try store.completeUpload(uploadID: u.uploadID, bucket: "mpu", key: key, parts: [(1, part.etag)])
            }
            let (completed, other): (Bool, Bool)
            switch round % 3 {
            case 0:
                (completed, other) = race(complete) { try store.abortUpload(uploadID: u.uploadID, bucket: "mpu", key: key) }
                #expect(completed != other, "round \(round): exactly one of complete and abort succeeds")
            case 1:
                let resent = try shard(store, body)
                (completed, other) = race(complete) {
                    try store.putPart(uploadID: u.uploadID, bucket: "mpu", key: key, number: 1, part: resent)
                }
                if !other { try? Files.remove(store.shardPath(resent.shardID)) }  // what the S3 layer does on failure
                #expect(completed, "round \(round): the part's ETag is the same either way")
            default:
                (completed, other) = race(complete, complete)
                #expect(completed != other, "round \(round): exactly one completion succeeds")
            }
            if completed || (round % 3 == 2) {
                // The acknowledged object reads back whole: its record never names a deleted shard.
                #expect(try read(store, store.head(bucket: "mpu", key: key)) == body, "round \(round)")
            }
            #expect(throws: ObjectError.noSuchUpload(u.uploadID)) { try store.listParts(uploadID: u.uploadID, bucket: "mpu", key: key) }
        }
        // A restart finds every record's shards and nothing left over.
        let again = try open()
        #expect(again.quarantined.isEmpty)
        for k in 0..<3 { if let o = try? again.head(bucket: "mpu", key: "k\(k)") { _ = try read(again, o) } }
        #expect(try again.listUploads(bucket: "mpu").isEmpty)
    }

    @Test func putRacingBucketDeleteLeavesNoOrphanRecord() throws {
        let store = try open()
        for round in 0..<400 {
            let bucket = "race\(round)"
            try store.createBucket(bucket)
            let part = try shard(store, Array("\(round)".utf8))
            let (put, deleted) = race(
                {
                    try store.putObject(bucket: bucket, key: "k", parts: [part], etag: part.etag, contentType: "x", userMetadata: [], checksums: [])
                }, { try store.deleteBucket(bucket) })
            #expect(put != deleted, "round \(round): either the PUT lands (and the bucket is not empty) or the bucket goes")
        }
        // An orphan record would be quarantined at the next start.
        #expect(try open().quarantined.isEmpty)
    }

    @Test func recordsStartUpCannotPlaceAreQuarantinedWithTheirShards() throws {
        var store = try open()
        try store.createBucket("keep")
        try store.createBucket("gone")
        let part = try shard(store, Array("precious".utf8))
        let info = try store.putObject(bucket: "gone", key: "k", parts: [part], etag: part.etag, contentType: "x", userMetadata: [], checksums: [])
        _ = try store.putObject(bucket: "keep", key: "k", parts: [try shard(store, [1])], etag: "e", contentType: "x", userMetadata: [], checksums: [])
        // The bucket record vanishes (damage, or a hand-made mistake); another record rots.
        try Files.remove(store.bucketPath("gone"))
        try Files.writeAtomically([0xFF, 0x00, 0x13], to: store.objectPath("keep", "k"))

        store = try open()
        #expect(store.quarantined.count == 2)
        #expect(throws: ObjectError.noSuchBucket("gone")) { try store.head(bucket: "gone", key: "k") }
        #expect(throws: ObjectError.noSuchKey("k")) { try store.head(bucket: "keep", key: "k") }
        // Nothing was deleted: the orphan's record and bytes are still there, across another start.
        store = try open()
        #expect(store.quarantined.isEmpty)
        let names = try Files.list("\(root)/quarantine")
        #expect(names.count == 2)
        let kept = names.compactMap { try? ObjectInfo(decoding: try Files.read("\(root)/quarantine/\($0)")) }
        #expect(kept == [info])
        #expect(try read(store, info) == Array("precious".utf8))
    }
}
