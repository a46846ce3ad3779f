import ChunkStore
import DataPlane
import Files
import HTTPTypes
import Hummingbird
import NIOCore
import Objects
import Security

extension S3Responder {
    static let metaPrefix = "x-amz-meta-"
    static let maxUserMetadataBytes = 2048

    func userMetadata(_ h: [String: String]) throws(S3Error) -> [Metadatum] {
        let items = h.filter { $0.key.hasPrefix(Self.metaPrefix) }
            .map { Metadatum(String($0.key.dropFirst(Self.metaPrefix.count)), $0.value) }
            .sorted { $0.name < $1.name }
        guard items.reduce(0, { $0 + $1.name.utf8.count + $1.value.utf8.count }) <= Self.maxUserMetadataBytes else {
            throw S3Error(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
        }
        return items
    }

    func putObject(_ bucket: String, _ key: String, call: S3Call, request: Request, principal: Principal) async throws -> Response {
        _ = try await blocking { try store.bucket(bucket) }
        let h = call.signed.headers
        let meta = try userMetadata(h)
        let contentType = h["content-type"] ?? "binary/octet-stream"
        if let plane = try spread(bucket, key) {
            try ObjectStore.checkKey(key)
            let data = try await ingest(request, call: call, principal: principal) { size in try await plane.put(bucket: bucket, key: key, size: size) }
            try await (data.sink as! PutStream).commit(
                VersionMeta(
                    size: data.part.size, etag: data.part.etag, contentType: contentType, lastModifiedMs: clock(), userMetadata: meta,
                    checksums: data.checksums, k: 0, m: 0, blockSize: 0, stripes: 0))
            return stored(data)
        }
        let data = try await ingest(request, call: call, principal: principal)
        try await commit(data) {
            try store.putObject(
                bucket: bucket, key: key, parts: [data.part], etag: data.part.etag,
                contentType: contentType, userMetadata: meta, checksums: data.checksums)
        }
        return stored(data)
    }

    /// Runs the commit of an ingested body; if it fails, the new shard goes too, so nothing half-made stays.
    func commit<T: Sendable>(_ data: Ingested, _ body: @escaping @Sendable () throws -> T) async throws {
        do { _ = try await blocking(body) } catch {
            try? Files.remove(store.shardPath(data.part.shardID))
            throw error
        }
    }

    /// The answer to a stored PUT or UploadPart: its ETag and the checksums it was verified against.
    func stored(_ data: Ingested) -> Response {
        var headers = HTTPFields()
        headers[.eTag] = "\"\(data.part.etag)\""
        for c in data.checksums { headers[.init("x-amz-checksum-\(c.name)")!] = c.value }
        return Response(status: .ok, headers: headers)
    }

    /// The current version with every part's shard already open: an open file outlives the
    /// unlink a concurrent overwrite does, so the body streams whole. Retries when an overwrite
    /// lands between reading the record and opening its shards.
    func openCurrent(_ bucket: String, _ key: String) async throws -> (ObjectInfo, [ShardReader]) {
        let store = self.store
        return try await blocking {
            var attempt = 0
            while true {
                let info = try store.head(bucket: bucket, key: key)
                do {
                    return (info, try info.parts.map { try store.openShard($0) })
                } catch ObjectError.storage(.notFound) where attempt < 8 {
                    attempt += 1  // replaced under us: read the new record
                }
            }
        }
    }

    /// The newest version across the cluster, metadata loaded; nil when the cluster has none
    /// (this node's store may still hold a copy from before the cluster grew).
    func openSpread(_ plane: DataPlane, _ bucket: String, _ key: String) async throws -> ObjectRead? {
        _ = try await blocking { try store.bucket(bucket) }
        guard key.utf8.count <= 1024 else { throw ObjectError.noSuchKey(key) }
        return try await plane.open(bucket: bucket, key: key)
    }

    func getObject(_ bucket: String, _ key: String, call: S3Call, request: Request) async throws -> Response {
        let (info, readers): (ObjectInfo, [ShardReader])
        var spread: ObjectRead?
        if let plane = try self.spread(bucket, key) { spread = try await openSpread(plane, bucket, key) }
        if let spread {
            (info, readers) = (spread.info, [])
        } else if request.method == .head {
            (info, readers) = (try await blocking { try store.head(bucket: bucket, key: key) }, [])
        } else {
            (info, readers) = try await openCurrent(bucket, key)
        }
        let h = call.signed.headers
        if let status = Conditions.evaluate(h, etag: info.etag, lastModifiedMs: info.lastModifiedMs, isRead: true) {
            var headers = HTTPFields()
            if status == 304 { headers[.eTag] = "\"\(info.etag)\""; headers[.lastModified] = HTTPDate.rfc7231(epochSeconds: info.lastModifiedMs / 1000) }
            if status == 412 { throw S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold") }
            return Response(status: .init(code: status), headers: headers)
        }

        var headers = HTTPFields()
        headers[.eTag] = "\"\(info.etag)\""
        headers[.lastModified] = HTTPDate.rfc7231(epochSeconds: info.lastModifiedMs / 1000)
        headers[.contentType] = info.contentType
        headers[.acceptRanges] = "bytes"
        for m in info.userMetadata { headers[.init(Self.metaPrefix + m.name)!] = m.value }
        for (q, header) in [
            ("response-content-type", HTTPField.Name.contentType), ("response-content-disposition", .contentDisposition),
            ("response-cache-control", .cacheControl), ("response-content-encoding", .contentEncoding),
            ("response-content-language", .contentLanguage), ("response-expires", .expires),
        ] {
            if let v = call.query(q) { headers[header] = v }
        }

        var range = 0..<info.size
        var partial = false
        if let pn = call.query("partNumber") {
            guard let n = Int(pn), n >= 1, n <= 10_000 else { throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive") }
            guard n <= info.parts.count else { throw S3Error(416, "InvalidPartNumber", "The requested partnumber is not satisfiable") }
            let start = info.parts[..<(n - 1)].reduce(0) { $0 + $1.size }
            range = start..<(start + info.parts[n - 1].size)
            if info.isMultipart {
                partial = true
                headers[.init("x-amz-mp-parts-count")!] = "\(info.parts.count)"
            }
        } else if let r = h["range"] {
            switch ByteRange.parse(r, size: info.size) {
            case .some(.some(let satisfiable)): range = satisfiable; partial = true
            case .some(.none): throw S3Error(416, "InvalidRange", "The requested range is not satisfiable")
            case .none: break  // malformed: serve the whole object, as S3 does
            }
        }
        if partial { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(info.size)" }
        if !partial && h["x-amz-checksum-mode"]?.uppercased() == "ENABLED" {
            for c in info.checksums { headers[.init("x-amz-checksum-\(c.name)")!] = c.value }
        }
        headers[.contentLength] = "\(range.count)"
        let status: HTTPResponse.Status = partial ? .partialContent : .ok
        if request.method == .head { return Response(status: status, headers: headers) }

        let pool = self.pool, wanted = range
        if let spread {
            return Response(
                status: status, headers: headers,
                body: ResponseBody(contentLength: wanted.count) { writer in
                    try await spread.read(wanted) { try await writer.write(ByteBuffer(bytes: $0)) }
                    try await writer.finish(nil)
                })
        }
        let body = ResponseBody(contentLength: wanted.count) { writer in
            var offset = 0
            for (part, reader) in zip(info.parts, readers) {
                let partRange = offset..<(offset + part.size)
                offset += part.size
                let lo = max(wanted.lowerBound, partRange.lowerBound), hi = min(wanted.upperBound, partRange.upperBound)
                guard lo < hi else { continue }
                var at = lo - partRange.lowerBound
                let end = hi - partRange.lowerBound
                while at < end {
                    let block = at / reader.blockSize
                    let data = try await pool.runIfActive { try reader.block(block) }
                    let blockStart = block * reader.blockSize
                    let slice = data[(at - blockStart)..<min(end - blockStart, data.count)]
                    try await writer.write(ByteBuffer(bytes: slice))
                    at += slice.count
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    func copyObject(_ bucket: String, _ key: String, source copied: CopySource, call: S3Call) async throws -> Response {
        try copied.checkVersion()
        let srcBucket = copied.bucket, srcKey = copied.key
        _ = try await blocking { try store.bucket(bucket) }
        let plane = try spread(bucket, key)
        var source: ObjectRead?
        if let plane { source = try await openSpread(plane, srcBucket, srcKey) }
        let info: ObjectInfo
        if let source {
            info = source.info
        } else {
            info = try await blocking { try store.head(bucket: srcBucket, key: srcKey) }
        }
        let h = call.signed.headers
        var conditional: [String: String] = [:]
        for n in ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"] {
            if let v = h["x-amz-copy-source-\(n)"] { conditional[n] = v }
        }
        if Conditions.evaluate(conditional, etag: info.etag, lastModifiedMs: info.lastModifiedMs, isRead: false) != nil {
            throw S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        }
        let replace = h["x-amz-metadata-directive"]?.uppercased() == "REPLACE"
        if !replace && srcBucket == bucket && srcKey == key {
            throw S3Error.invalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            )
        }
        let meta = replace ? try userMetadata(h) : info.userMetadata
        let contentType = replace ? (h["content-type"] ?? "binary/octet-stream") : info.contentType
        if let plane {
            try ObjectStore.checkKey(key)
            let w = try await plane.put(bucket: bucket, key: key, size: info.size)
            do {
                if let source {
                    try await source.read(0..<info.size) { try await w.append($0) }
                } else {
                    let store = self.store
                    let readers = try await blocking { try info.parts.map { try store.openShard($0) } }
                    try await stream(Array(zip(info.parts, readers)), into: w)
                }
            } catch {
                w.abort()
                throw error
            }
            let lastModified = clock()
            try await w.commit(
                VersionMeta(
                    size: info.size, etag: info.etag, contentType: contentType, lastModifiedMs: lastModified, userMetadata: meta,
                    checksums: info.checksums, k: 0, m: 0, blockSize: 0, stripes: 0))
            return copyResult(etag: info.etag, lastModifiedMs: lastModified)
        }
        let objects = self.store
        // Copy the bytes into fresh shards, so source and copy live and die independently.
        let copied: ObjectInfo = try await blocking {
            var parts: [PartRef] = []
            do {
                for p in info.parts {
                    let reader = try objects.openShard(p)
                    let (id, writer) = try objects.newShard()
                    parts.append(PartRef(shardID: id, size: p.size, etag: p.etag))
                    do {
                        try reader.forEachSlice(of: 0..<p.size) { try writer.append($0) }
                        try writer.finish()
                    } catch { writer.abort(); throw error }
                }
                return try objects.putObject(
                    bucket: bucket, key: key, parts: parts, etag: info.etag, contentType: contentType,
                    userMetadata: meta, checksums: info.checksums)
            } catch {
                for p in parts { try? Files.remove(objects.shardPath(p.shardID)) }
                throw error
            }
        }
        return copyResult(etag: copied.etag, lastModifiedMs: copied.lastModifiedMs)
    }

    func copyResult(etag: String, lastModifiedMs: Int64) -> Response {
        xmlResponse(
            XML.document("CopyObjectResult") { x in
                x.element("LastModified", HTTPDate.iso8601(epochMs: lastModifiedMs))
                x.element("ETag", "\"\(etag)\"")
            })
    }

    func deleteObjects(_ bucket: String, request: Request, principal: Principal, call: S3Call) async throws -> Response {
        _ = try await blocking { try store.bucket(bucket) }
        let body = try await smallBody(request, call: call)
        guard let root = XMLNode.parse(body), root.name == "Delete" else { throw S3Error.malformedXML }
        let quiet = root.child("Quiet")?.text.trimmingSpaces.lowercased() == "true"
        let keys = root.all("Object").map { $0.child("Key")?.text }
        guard !keys.isEmpty, keys.count <= 1000, keys.allSatisfy({ $0 != nil }) else { throw S3Error.malformedXML }
        var results: [(String, S3Error?)] = []
        for key in keys.map({ $0! }) {
            do {
                try await deleteObject(bucket, key)
                results.append((key, nil))
            } catch let e as ObjectError {
                results.append((key, S3Error(e)))
            }
        }
        return xmlResponse(
            XML.document("DeleteResult") { x in
                for (key, error) in results {
                    if let error {
                        x.element("Error") { x in
                            x.element("Key", key); x.element("Code", error.code); x.element("Message", error.message)
                        }
                    } else if !quiet {
                        x.element("Deleted") { x in x.element("Key", key) }
                    }
                }
            })
    }

    /// Reads a small request body (XML documents) whole, checking Content-MD5 when given.
    func smallBody(_ request: Request, call: S3Call, limit: Int = 4 << 20) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await b in request.body {
            out.append(contentsOf: b.readableBytesView)
            guard out.count <= limit else { throw S3Error(400, "MaxMessageLengthExceeded", "Your request was too big.") }
        }
        if let m = call.signed.headers["content-md5"], Base64.decode(m) != Digest.md5(out) {
            throw S3Error.badDigest("The Content-MD5 you specified did not match what we received.")
        }
        return out
    }
}

/// RFC 7233 single byte ranges.
enum ByteRange {
    /// nil: malformed (ignore the header); .some(nil): unsatisfiable (416); .some(range): serve it.
    static func parse(_ header: String, size: Int) -> Range<Int>?? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6).trimmingSpaces
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        if parts[0].isEmpty {
            guard let n = Int(parts[1]), n >= 0 else { return nil }
            guard n > 0, size > 0 else { return .some(nil) }
            return .some(max(0, size - n)..<size)
        }
        guard let first = Int(parts[0]), first >= 0 else { return nil }
        let last: Int
        if parts[1].isEmpty {
            last = size - 1
        } else {
            guard let l = Int(parts[1]), l >= first else { return nil }
            last = min(l, size - 1)
        }
        guard first < size else { return .some(nil) }
        return .some(first..<(last + 1))
    }
}

/// RFC 7232 preconditions as S3 applies them.
enum Conditions {
    /// nil to proceed, else the status to answer with (304 or 412).
    static func evaluate(_ h: [String: String], etag: String, lastModifiedMs: Int64, isRead: Bool) -> Int? {
        func matches(_ list: String) -> Bool {
            list.split(separator: ",").contains { t in
                let v = t.trimmingSpaces
                return v == "*" || v.filter { $0 != "\"" } == etag
            }
        }
        let modified = lastModifiedMs / 1000
        if let im = h["if-match"] {
            if !matches(im) { return 412 }
        } else if let ius = h["if-unmodified-since"].flatMap(HTTPDate.parse), modified > ius {
            return 412
        }
        if let inm = h["if-none-match"] {
            if matches(inm) { return isRead ? 304 : 412 }
        } else if let ims = h["if-modified-since"].flatMap(HTTPDate.parse), modified <= ims {
            return isRead ? 304 : 412
        }
        return nil
    }
}
