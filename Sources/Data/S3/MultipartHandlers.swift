import ChunkStore
import DataPlane
import Hummingbird
import NIOCore
import Objects

extension S3Responder {
    func createUpload(_ bucket: String, _ key: String, call: S3Call) async throws -> Response {
        let h = call.signed.headers
        let meta = try userMetadata(h)
        let contentType = h["content-type"] ?? "binary/octet-stream"
        let u: UploadInfo
        if let plane = try spread(bucket) {
            _ = try await blocking { try store.bucket(bucket) }
            try ObjectStore.checkKey(key)
            u = try await plane.createUpload(bucket: bucket, key: key, contentType: contentType, userMetadata: meta)
        } else {
            u = try await blocking { try store.createUpload(bucket: bucket, key: key, contentType: contentType, userMetadata: meta) }
        }
        return xmlResponse(
            XML.document("InitiateMultipartUploadResult") { x in
                x.element("Bucket", bucket); x.element("Key", key); x.element("UploadId", u.uploadID)
            })
    }

    func uploadPart(_ bucket: String, _ key: String, uploadID: String, call: S3Call, request: Request, principal: Principal) async throws -> Response {
        guard let n = call.query("partNumber").flatMap(Int.init), (1...10_000).contains(n) else {
            throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive")
        }
        if let plane = try spreadUpload(uploadID, bucket, key) {
            _ = try await plane.upload(uploadID, bucket: bucket, key: key)
            let data = try await ingest(request, call: call, principal: principal) { size in
                try await plane.putPart(bucket: bucket, uploadID: uploadID, number: n, size: size)
            }
            try await (data.sink as! PutStream).commit(
                VersionMeta(
                    size: data.part.size, etag: data.part.etag, contentType: "", lastModifiedMs: clock(), userMetadata: [], checksums: data.checksums,
                    k: 0, m: 0, blockSize: 0, stripes: 0))
            return stored(data)
        }
        _ = try await blocking { try store.upload(uploadID, bucket: bucket, key: key) }
        let data = try await ingest(request, call: call, principal: principal)
        try await commit(data) { try store.putPart(uploadID: uploadID, bucket: bucket, key: key, number: n, part: data.part) }
        return stored(data)
    }

    /// The data plane when upload `id`'s parts spread over the cluster: nil on a one-node
    /// cluster, and for an upload this node's store began before the cluster grew (its parts
    /// stay here, and its completion moves the object into the cluster).
    func spreadUpload(_ id: String, _ bucket: String, _ key: String) throws -> DataPlane? {
        guard let plane = try spread(bucket) else { return nil }
        return (try? store.upload(id, bucket: bucket, key: key)) == nil ? plane : nil
    }

    func completeUpload(_ bucket: String, _ key: String, uploadID: String, request: Request, principal: Principal, call: S3Call) async throws -> Response {
        let spreadParts = try spreadUpload(uploadID, bucket, key)
        if let plane = spreadParts {
            _ = try await plane.upload(uploadID, bucket: bucket, key: key)
        } else {
            _ = try await blocking { try store.upload(uploadID, bucket: bucket, key: key) }
        }
        let body = try await smallBody(request, call: call)
        guard let root = XMLNode.parse(body), root.name == "CompleteMultipartUpload" else { throw S3Error.malformedXML }
        var parts: [(number: Int, etag: String)] = []
        for p in root.all("Part") {
            guard let n = p.child("PartNumber").flatMap({ Int($0.text.trimmingSpaces) }), let etag = p.child("ETag")?.text.trimmingSpaces else {
                throw S3Error.malformedXML
            }
            parts.append((n, etag))
        }
        guard !parts.isEmpty else { throw S3Error.malformedXML }
        let chosen = parts
        let info: ObjectInfo
        if let plane = spreadParts {
            info = try await plane.completeUpload(bucket: bucket, key: key, uploadID: uploadID, parts: chosen, nowMs: clock())
        } else if let plane = try spread(bucket, key) {
            info = try await completeSpread(plane, bucket, key, uploadID: uploadID, parts: chosen)
        } else {
            info = try await blocking { try store.completeUpload(uploadID: uploadID, bucket: bucket, key: key, parts: chosen) }
        }
        return xmlResponse(
            XML.document("CompleteMultipartUploadResult") { x in
                x.element("Location", "/\(bucket)/\(key)"); x.element("Bucket", bucket); x.element("Key", key)
                x.element("ETag", "\"\(info.etag)\"")
            })
    }

    /// The parts, uploaded to this node before the cluster grew, stream into one object spread
    /// over the cluster; the upload and its parts go once it is acknowledged.
    func completeSpread(
        _ plane: DataPlane, _ bucket: String, _ key: String, uploadID: String, parts: [(number: Int, etag: String)]
    ) async throws
        -> ObjectInfo
    {
        let store = self.store
        let (upload, refs, etag, readers) = try await blocking {
            let (u, refs, etag) = try store.resolveUpload(uploadID: uploadID, bucket: bucket, key: key, parts: parts)
            return (u, refs, etag, try refs.map { try store.openShard($0) })  // open files outlive a part replaced meanwhile
        }
        let size = refs.reduce(0) { $0 + $1.size }
        let w = try await plane.put(bucket: bucket, key: key, size: size)
        do { try await stream(Array(zip(refs, readers)), into: w) } catch {
            w.abort()
            throw error
        }
        let lastModified = clock()
        try await w.commit(
            VersionMeta(
                size: size, etag: etag, contentType: upload.contentType, lastModifiedMs: lastModified, userMetadata: upload.userMetadata, checksums: [],
                k: 0, m: 0, blockSize: 0, stripes: 0, partSizes: refs.count > 1 ? refs.map(\.size) : []))
        try? await blocking { try store.abortUpload(uploadID: uploadID, bucket: bucket, key: key) }
        return ObjectInfo(
            bucket: bucket, key: key, versionID: w.version.description, size: size, etag: etag, contentType: upload.contentType,
            lastModifiedMs: lastModified, userMetadata: upload.userMetadata, parts: refs, checksums: [])
    }

    /// Streams parts kept in this node's store into a write spreading over the cluster.
    func stream(_ parts: [(PartRef, ShardReader)], into w: PutStream) async throws {
        for (part, reader) in parts {
            var at = 0
            while at < part.size {
                let block = at / reader.blockSize
                let data = try await pool.runIfActive { try reader.block(block) }
                try await w.append(data)
                at += data.count
            }
        }
    }

    /// Moves objects this node's store kept from before the cluster grew into the cluster, each
    /// dated by its own last-modified time (so a write made since stays newer), then drops the
    /// local copy. At most `limit` per call; returns how many moved.
    public func spreadLocalObjects(limit: Int = 100) async -> Int {
        guard let plane, (try? spread("")) != nil else { return 0 }
        let store = self.store
        var moved = 0
        for b in store.listBuckets() {
            guard let page = try? store.list(bucket: b.name, maxKeys: limit - moved) else { continue }
            for o in page.objects {
                do {
                    let readers = try await blocking { try o.parts.map { try store.openShard($0) } }
                    let w = try await plane.put(bucket: o.bucket, key: o.key, size: o.size, asOfMs: o.lastModifiedMs)
                    do { try await stream(Array(zip(o.parts, readers)), into: w) } catch {
                        w.abort()
                        throw error
                    }
                    try await w.commit(
                        VersionMeta(
                            size: o.size, etag: o.etag, contentType: o.contentType, lastModifiedMs: o.lastModifiedMs, userMetadata: o.userMetadata,
                            checksums: o.checksums, k: 0, m: 0, blockSize: 0, stripes: 0, partSizes: o.parts.count > 1 ? o.parts.map(\.size) : []))
                    try await blocking { try store.deleteObject(bucket: o.bucket, key: o.key) }
                    moved += 1
                } catch {
                    logger.warning("cannot move an object into the cluster yet", metadata: ["bucket": "\(o.bucket)", "key": "\(o.key)", "error": "\(error)"])
                    return moved
                }
            }
            if moved >= limit { break }
        }
        return moved
    }

    func listParts(_ bucket: String, _ key: String, uploadID: String) async throws -> Response {
        let parts: [UploadedPart]
        if let plane = try spreadUpload(uploadID, bucket, key) {
            _ = try await plane.upload(uploadID, bucket: bucket, key: key)
            parts = try await plane.parts(bucket: bucket, uploadID: uploadID)
        } else {
            parts = try await blocking { try store.listParts(uploadID: uploadID, bucket: bucket, key: key) }
        }
        return xmlResponse(
            XML.document("ListPartsResult") { x in
                x.element("Bucket", bucket); x.element("Key", key); x.element("UploadId", uploadID)
                x.element("StorageClass", "STANDARD"); x.element("MaxParts", "1000"); x.element("IsTruncated", "false")
                for p in parts {
                    x.element("Part") { x in
                        x.element("PartNumber", "\(p.number)")
                        x.element("LastModified", HTTPDate.iso8601(epochMs: p.lastModifiedMs))
                        x.element("ETag", "\"\(p.part.etag)\"")
                        x.element("Size", "\(p.part.size)")
                    }
                }
            })
    }

    func listUploads(_ bucket: String, _ c: S3Call) async throws -> Response {
        let prefix = c.query("prefix") ?? ""
        let local = try await blocking { try store.listUploads(bucket: bucket) }.filter { $0.key.hasPrefix(prefix) }
        var uploads = local, truncated = false, limit = 1000
        if let plane = try spread(bucket) {
            if let s = c.query("max-uploads") {
                guard let n = Int(s), n >= 0 else { throw S3Error.invalidArgument("max-uploads must be a non-negative integer") }
                limit = min(n, 1000)
            }
            let keyMarker = c.query("key-marker") ?? "", idMarker = c.query("upload-id-marker") ?? ""
            guard keyMarker.utf8.count <= 1024, idMarker.utf8.count <= 64 else { throw S3Error.invalidArgument("marker too long") }
            let page = try await plane.uploads(bucket: bucket, prefix: prefix, keyMarker: keyMarker, uploadIDMarker: idMarker, limit: limit)
            // Uploads this node began before the cluster grew are listed too (there are few).
            uploads = (page.uploads + local).sorted { ($0.key, $0.initiatedMs) < ($1.key, $1.initiatedMs) }
            truncated = page.truncated
        }
        let last = uploads.last
        return xmlResponse(
            XML.document("ListMultipartUploadsResult") { x in
                x.element("Bucket", bucket); x.element("Prefix", prefix); x.element("MaxUploads", "\(limit)")
                x.element("IsTruncated", truncated ? "true" : "false")
                if truncated, let last { x.element("NextKeyMarker", last.key); x.element("NextUploadIdMarker", last.uploadID) }
                for u in uploads {
                    x.element("Upload") { x in
                        x.element("Key", u.key); x.element("UploadId", u.uploadID)
                        x.element("Initiated", HTTPDate.iso8601(epochMs: u.initiatedMs)); x.element("StorageClass", "STANDARD")
                    }
                }
            })
    }
}
