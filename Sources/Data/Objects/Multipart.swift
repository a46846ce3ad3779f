import ChunkStore
import Files
import Security

extension ObjectStore {
    public func createUpload(bucket: String, key: String, contentType: String, userMetadata: [Metadatum]) throws(ObjectError) -> UploadInfo {
        try Names.checkKey(key)
        _ = try self.bucket(bucket)
        let inBucket = state.withLock { s in s.uploads.values.count { $0.info.bucket == bucket } }
        guard inBucket < maxUploadsPerBucket else { throw .tooManyUploads(bucket: bucket, limit: maxUploadsPerBucket) }
        let info = UploadInfo(
            uploadID: Self.randomID(), bucket: bucket, key: key, contentType: contentType,
            userMetadata: userMetadata, initiatedMs: clock())
        do throws(FileError) { try Files.writeAtomically(info.encoded(), to: uploadPath(info.uploadID)) } catch { throw .storage(error) }
        state.withLock { $0.uploads[info.uploadID] = UploadEntry(info: info) }
        return info
    }

    public func upload(_ id: String, bucket: String, key: String) throws(ObjectError) -> UploadInfo {
        try state.withLock { (s: inout Index) throws(ObjectError) in
            guard let u = s.uploads[id], u.info.bucket == bucket, u.info.key == key else { throw .noSuchUpload(id) }
            return u.info
        }
    }

    /// Records an uploaded part (a finished shard), replacing an earlier upload of the same number.
    public func putPart(uploadID: String, bucket: String, key: String, number: Int, part: PartRef) throws(ObjectError) {
        try syncShards([part])
        try stripe(bucket, key).lock.withLock { (_: inout Void) throws(ObjectError) in
            _ = try upload(uploadID, bucket: bucket, key: key)
            let record = UploadedPart(number: number, part: part, lastModifiedMs: clock())
            do throws(FileError) { try Files.writeAtomically(record.encoded(), to: partPath(uploadID, number)) } catch { throw .storage(error) }
            let old = state.withLock { $0.uploads[uploadID]?.parts.updateValue(record, forKey: number) }
            if let old, old.part.shardID != part.shardID { try? Files.remove(shardPath(old.part.shardID)) }
        }
    }

    public func listParts(uploadID: String, bucket: String, key: String) throws(ObjectError) -> [UploadedPart] {
        _ = try upload(uploadID, bucket: bucket, key: key)
        return state.withLock { ($0.uploads[uploadID]?.parts.values.map { $0 } ?? []).sorted { $0.number < $1.number } }
    }

    public func listUploads(bucket: String) throws(ObjectError) -> [UploadInfo] {
        _ = try self.bucket(bucket)
        return state.withLock { s in
            s.uploads.values.map(\.info).filter { $0.bucket == bucket }
                .sorted { ($0.key, $0.initiatedMs) < ($1.key, $1.initiatedMs) }
        }
    }

    public func abortUpload(uploadID: String, bucket: String, key: String) throws(ObjectError) {
        try stripe(bucket, key).lock.withLock { (_: inout Void) throws(ObjectError) in
            _ = try upload(uploadID, bucket: bucket, key: key)
            let entry = state.withLock { $0.uploads.removeValue(forKey: uploadID) }
            do throws(FileError) {
                try Files.remove(uploadPath(uploadID))
                try Files.syncDirectory(of: uploadPath(uploadID))
            } catch { throw .storage(error) }
            for p in entry?.parts.values.map({ $0 }) ?? [] {
                try? Files.remove(partPath(uploadID, p.number))
                try? Files.remove(shardPath(p.part.shardID))
            }
        }
    }

    /// The parts a completion names, checked against those uploaded (order, ETags, sizes), and
    /// the multipart ETag they make.
    public func resolveUpload(
        uploadID: String, bucket: String, key: String, parts chosen: [(number: Int, etag: String)]
    ) throws(ObjectError) -> (
        upload: UploadInfo, parts: [PartRef], etag: String
    ) {
        let upload = try upload(uploadID, bucket: bucket, key: key)
        let uploaded = state.withLock { $0.uploads[uploadID]?.parts ?? [:] }
        let (refs, etag) = try Self.choose(chosen, of: uploaded.mapValues(\.part))
        return (upload, refs, etag)
    }

    /// The parts a completion names, checked against those uploaded (ascending numbers, ETags,
    /// every part but the last at least 5 MiB), and the multipart ETag they make: the MD5 of
    /// the parts' binary MD5s, then "-N".
    public static func choose(_ chosen: [(number: Int, etag: String)], of uploaded: [Int: PartRef]) throws(ObjectError) -> (parts: [PartRef], etag: String) {
        guard !chosen.isEmpty else { throw .invalidPart(0) }
        guard zip(chosen, chosen.dropFirst()).allSatisfy({ $0.number < $1.number }) else { throw .invalidPartOrder }
        var refs: [PartRef] = []
        let md5s = Digest(.md5)
        for (i, c) in chosen.enumerated() {
            guard let p = uploaded[c.number], p.etag == c.etag.replacingQuotes() else { throw .invalidPart(c.number) }
            if i < chosen.count - 1 && p.size < Names.minPartSize { throw .entityTooSmall(part: c.number, size: p.size) }
            refs.append(p)
            md5s.update(bytes(fromHex: p.etag) ?? [])
        }
        return (refs, "\(md5s.finish().hex)-\(refs.count)")
    }

    /// Assembles the listed parts (number, ETag) into the object. The parts' shards become the
    /// object's; unlisted parts are discarded. ETag: MD5 of the parts' binary MD5s, then "-N".
    /// The whole completion holds the key's stripe lock, as `putPart` and `abortUpload` do, so a
    /// concurrent abort, re-sent part or second completion runs wholly before or after it.
    public func completeUpload(uploadID: String, bucket: String, key: String, parts chosen: [(number: Int, etag: String)]) throws(ObjectError) -> ObjectInfo {
        try stripe(bucket, key).lock.withLock { (_: inout Void) throws(ObjectError) -> ObjectInfo in
            let (upload, refs, etag) = try resolveUpload(uploadID: uploadID, bucket: bucket, key: key, parts: chosen)
            let uploaded = state.withLock { $0.uploads[uploadID]?.parts ?? [:] }
            let info = ObjectInfo(
                bucket: bucket, key: key, versionID: Self.randomID(), size: refs.reduce(0) { $0 + $1.size },
                etag: etag, contentType: upload.contentType,
                lastModifiedMs: clock(), userMetadata: upload.userMetadata, parts: refs, checksums: [])
            let used = Set(refs.map(\.shardID))
            let leftovers = uploaded.values.filter { !used.contains($0.part.shardID) }
            try commitLocked(info, alsoRemoving: leftovers.map { shardPath($0.part.shardID) })
            // The object now owns the shards; drop the upload's records (recovery finishes this after a crash).
            state.withLock { _ = $0.uploads.removeValue(forKey: uploadID) }
            for p in uploaded.values { try? Files.remove(partPath(uploadID, p.number)) }
            try? Files.remove(uploadPath(uploadID))
            return info
        }
    }
}

extension String {
    func replacingQuotes() -> String { filter { $0 != "\"" } }
}
