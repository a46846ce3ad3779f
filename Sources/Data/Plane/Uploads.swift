import Objects

/// Multipart uploads spread over the cluster, so that any node takes any of an upload's calls
/// (a load balancer in front of the nodes sends each UploadPart wherever it likes). An upload
/// is an empty object of the bucket's uploads namespace, its key the object key, a NUL and the
/// upload id (a listing runs in key order, and the id starts with its hex creation time, so
/// one key's uploads follow each other in the order they began); its metadata is the future
/// object's. Each part is an object of the parts namespace, `<upload id>/<number, 5 digits>`.
/// Both namespaces begin with ".", which no S3 bucket name does; their objects are placed,
/// repaired and rebalanced as any other. Completion streams the parts, in order, into one new
/// object (the parts are read once and written once, as a single node's completion does with
/// its shards' blocks), then deletes the upload and every part.
extension DataPlane {
    static func uploadsBucket(_ bucket: String) -> String { ".uploads." + bucket }
    static func partsBucket(_ bucket: String) -> String { ".parts." + bucket }
    static func uploadKey(_ key: String, _ id: String) -> String { key + "\u{0}" + id }
    static func partKey(_ id: String, _ number: Int) -> String {
        let n = String(number)
        return id + "/" + String(repeating: "0", count: max(0, 5 - n.count)) + n
    }

    /// A new upload's id: its creation time (12 hex digits of milliseconds), then 16 random
    /// hex digits.
    static func newUploadID(nowMs: Int64) -> String {
        let t = String(UInt64(clamping: max(0, nowMs)) & 0xFFFF_FFFF_FFFF, radix: 16)
        let r = String(UInt64.random(in: 0 ... .max), radix: 16)
        return String(repeating: "0", count: 12 - t.count) + t + String(repeating: "0", count: 16 - r.count) + r
    }

    /// Writes an empty object of `meta` (an upload's record).
    func putEmpty(bucket: String, key: String, _ meta: VersionMeta) async throws {
        let w = try await put(bucket: bucket, key: key, size: 0)
        try await w.commit(meta)
    }

    public func createUpload(bucket: String, key: String, contentType: String, userMetadata: [Metadatum]) async throws -> UploadInfo {
        let now = wallMs()
        let info = UploadInfo(
            uploadID: Self.newUploadID(nowMs: now), bucket: bucket, key: key, contentType: contentType, userMetadata: userMetadata, initiatedMs: now)
        try await putEmpty(
            bucket: Self.uploadsBucket(bucket), key: Self.uploadKey(key, info.uploadID),
            VersionMeta(
                size: 0, etag: "", contentType: contentType, lastModifiedMs: now, userMetadata: userMetadata, checksums: [], k: 0, m: 0, blockSize: 0,
                stripes: 0))
        return info
    }

    /// The upload `id` of `bucket`/`key`; throws `ObjectError.noSuchUpload` when there is none
    /// (never made, completed or aborted).
    public func upload(_ id: String, bucket: String, key: String) async throws -> UploadInfo {
        guard id.utf8.count <= 64, key.utf8.count <= 1024, let r = try await open(bucket: Self.uploadsBucket(bucket), key: Self.uploadKey(key, id)) else {
            throw ObjectError.noSuchUpload(id)
        }
        return UploadInfo(
            uploadID: id, bucket: bucket, key: key, contentType: r.meta.contentType, userMetadata: r.meta.userMetadata,
            initiatedMs: r.meta.lastModifiedMs)
    }

    /// Starts the write of part `number` of upload `id` (replacing an earlier upload of it).
    public func putPart(bucket: String, uploadID id: String, number: Int, size: Int) async throws -> PutStream {
        try await put(bucket: Self.partsBucket(bucket), key: Self.partKey(id, number), size: size)
    }

    /// The upload's parts, by number; `PartRef.shardID` names the part's object.
    public func parts(bucket: String, uploadID id: String) async throws -> [UploadedPart] {
        var out: [UploadedPart] = []
        var marker = ""
        while out.count <= VersionMeta.maxParts {
            let page = try await list(bucket: Self.partsBucket(bucket), prefix: id + "/", delimiter: "", marker: marker, maxKeys: 1000)
            for o in page.objects {
                guard let n = Int(o.key.dropFirst(id.utf8.count + 1)), (1...VersionMeta.maxParts).contains(n) else { continue }
                out.append(UploadedPart(number: n, part: PartRef(shardID: o.key, size: o.size, etag: o.etag), lastModifiedMs: o.lastModifiedMs))
            }
            guard page.isTruncated, let last = page.objects.last?.key else { break }
            marker = last
        }
        return out
    }

    /// Uploads in progress in `bucket` whose keys begin with `prefix`, in key then start order,
    /// after (`keyMarker`, `uploadIDMarker`); at most `limit`, and whether more follow.
    public func uploads(
        bucket: String, prefix: String, keyMarker: String, uploadIDMarker: String, limit: Int
    ) async throws -> (
        uploads: [UploadInfo], truncated: Bool
    ) {
        // Every upload of keyMarker itself sorts after it (key NUL id), so a key marker alone is
        // passed as key followed by the highest id; an id marker resumes within the key.
        let marker = keyMarker.isEmpty ? "" : Self.uploadKey(keyMarker, uploadIDMarker.isEmpty ? "\u{10FFFF}" : uploadIDMarker)
        let page = try await list(bucket: Self.uploadsBucket(bucket), prefix: prefix, delimiter: "", marker: marker, maxKeys: max(0, limit))
        let uploads = page.objects.compactMap { o -> UploadInfo? in
            guard let nul = o.key.utf8.lastIndex(of: 0) else { return nil }
            let key = String(o.key[..<nul]), id = String(o.key[o.key.utf8.index(after: nul)...])
            return UploadInfo(uploadID: id, bucket: bucket, key: key, contentType: o.contentType, userMetadata: o.userMetadata, initiatedMs: o.lastModifiedMs)
        }
        return (uploads, page.isTruncated)
    }

    /// Completes upload `id`: the chosen parts (checked as a single node checks them) stream
    /// into the object; once it is acknowledged the upload and its parts are deleted.
    public func completeUpload(
        bucket: String, key: String, uploadID id: String, parts chosen: [(number: Int, etag: String)], nowMs: Int64
    ) async throws -> ObjectInfo {
        let upload = try await upload(id, bucket: bucket, key: key)
        let uploaded = try await parts(bucket: bucket, uploadID: id)
        let (refs, etag) = try ObjectStore.choose(chosen, of: Dictionary(uploaded.map { ($0.number, $0.part) }) { a, _ in a })
        let size = refs.reduce(0) { $0 + $1.size }
        let w = try await put(bucket: bucket, key: key, size: size)
        do {
            for (ref, c) in zip(refs, chosen) {
                // A part uploaded again since the listing changed its ETag: the client's list is stale.
                guard let r = try await open(bucket: Self.partsBucket(bucket), key: ref.shardID), r.meta.etag == ref.etag, r.meta.size == ref.size else {
                    throw ObjectError.invalidPart(c.number)
                }
                try await r.read(0..<ref.size) { try await w.append($0) }
            }
        } catch {
            w.abort()
            throw error
        }
        let meta = VersionMeta(
            size: size, etag: etag, contentType: upload.contentType, lastModifiedMs: nowMs, userMetadata: upload.userMetadata, checksums: [], k: 0,
            m: 0, blockSize: 0, stripes: 0, partSizes: refs.count > 1 ? refs.map(\.size) : [])
        try await w.commit(meta)
        try? await forget(bucket: bucket, key: key, uploadID: id, parts: uploaded)
        return ObjectInfo(
            bucket: bucket, key: key, versionID: w.version.description, size: size, etag: etag, contentType: upload.contentType, lastModifiedMs: nowMs,
            userMetadata: upload.userMetadata, parts: refs, checksums: [])
    }

    /// Aborts upload `id`: it and its parts are deleted (a part still being uploaded may land
    /// after; aborting again deletes it, as S3 advises).
    public func abortUpload(bucket: String, key: String, uploadID id: String) async throws {
        _ = try await upload(id, bucket: bucket, key: key)
        try await forget(bucket: bucket, key: key, uploadID: id, parts: try await parts(bucket: bucket, uploadID: id))
    }

    /// Deletes the upload's record first (it is gone for every node at once), then its parts.
    func forget(bucket: String, key: String, uploadID id: String, parts: [UploadedPart]) async throws {
        try await delete(bucket: Self.uploadsBucket(bucket), key: Self.uploadKey(key, id))
        for p in parts { try await delete(bucket: Self.partsBucket(bucket), key: p.part.shardID) }
    }
}
