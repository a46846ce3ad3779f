import Hummingbird
import Objects
import Security

extension S3Responder {
    /// The buckets the key may use, as AWS lists an account's own.
    func listBuckets(principal: Principal) async throws -> Response {
        let buckets = store.listBuckets().filter { !credentials.rights(of: principal.accessKey, on: $0.name).isEmpty }
        let me = credentials.user(principal.accessKey)
        return xmlResponse(
            XML.document("ListAllMyBucketsResult") { x in
                x.element("Owner") { x in
                    x.element("ID", me.id); x.element("DisplayName", me.name)
                }
                x.element("Buckets") { x in
                    for b in buckets {
                        x.element("Bucket") { x in
                            x.element("Name", b.name); x.element("CreationDate", HTTPDate.iso8601(epochMs: b.createdMs))
                        }
                    }
                }
            })
    }

    func createBucket(_ bucket: String, request: Request, principal: Principal) async throws -> Response {
        guard credentials.mayCreateBuckets(principal.accessKey) else { throw S3Error(403, "AccessDenied", "Access Denied") }
        // The body, when present, is a CreateBucketConfiguration; it must at least be well-formed.
        var body: [UInt8] = []
        for try await b in request.body { body.append(contentsOf: b.readableBytesView); if body.count > 1 << 16 { throw S3Error.malformedXML } }
        if !body.isEmpty {
            guard let root = XMLNode.parse(body), root.name == "CreateBucketConfiguration" else { throw S3Error.malformedXML }
            if let loc = root.child("LocationConstraint")?.text, !loc.isEmpty, loc != settings.region {
                throw S3Error(
                    400, "InvalidLocationConstraint", "The specified location-constraint \(loc) is not valid; this endpoint serves \(settings.region)")
            }
        }
        // Stacks' own: the bucket's erasure scheme (K+M or auto), as MinIO users pick parity by storage class.
        let scheme = request.headers[.init("x-stacks-scheme")!]
        do {
            if let catalog {
                try await catalog.createBucket(bucket, scheme: scheme, owner: principal.accessKey)
            } else {
                if scheme != nil { throw S3Error.invalidArgument("x-stacks-scheme needs a cluster; this store keeps one copy") }
                try await blocking { try store.createBucket(bucket) }
            }
        } catch ObjectError.bucketAlreadyOwnedByYou(let name) {
            // As AWS: the owner creating it again succeeds in us-east-1, and is told elsewhere.
            guard settings.region == "us-east-1" else { throw ObjectError.bucketAlreadyOwnedByYou(name) }
        }
        var headers = HTTPFields()
        headers[.location] = "/\(bucket)"
        return Response(status: .ok, headers: headers)
    }

    func location(_ bucket: String) async throws -> Response {
        _ = try await blocking { try store.bucket(bucket) }
        let region = settings.region == "us-east-1" ? "" : settings.region
        return xmlResponse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\(XML.escape(region))</LocationConstraint>"
        )
    }

    func listObjects(_ bucket: String, _ c: S3Call) async throws -> Response {
        let owner = credentials.owner(of: bucket)
        let v2 = c.query("list-type") == "2"
        if let lt = c.query("list-type"), lt != "2" { throw S3Error.invalidArgument("list-type must be 2") }
        let urlEncode = c.query("encoding-type") == "url"
        if let et = c.query("encoding-type"), et != "url" { throw S3Error.invalidArgument("Invalid Encoding Method specified in Request") }
        let maxKeys: Int
        if let m = c.query("max-keys") {
            guard let n = Int(m), n >= 0 else { throw S3Error.invalidArgument("max-keys must be a non-negative integer") }
            maxKeys = min(n, 1000)
        } else {
            maxKeys = 1000
        }
        let prefix = c.query("prefix") ?? "", delimiter = c.query("delimiter") ?? ""
        let token = c.query("continuation-token")
        let marker: String
        if v2 {
            if let token {
                guard let bytes = Base64.decode(token), let s = String(validating: bytes, as: UTF8.self) else {
                    throw S3Error.invalidArgument("The continuation token provided is incorrect")
                }
                marker = s
            } else {
                marker = c.query("start-after") ?? ""
            }
        } else {
            marker = c.query("marker") ?? ""
        }
        let page: ListPage
        if let plane = try spread(bucket) {
            _ = try await blocking { try store.bucket(bucket) }
            page = try await plane.list(bucket: bucket, prefix: prefix, delimiter: delimiter, marker: marker, maxKeys: maxKeys)
        } else {
            page = try await blocking { try store.list(bucket: bucket, prefix: prefix, delimiter: delimiter, marker: marker, maxKeys: maxKeys) }
        }
        func enc(_ s: String) -> String { urlEncode ? SigV4.uriEncode(s, slash: false) : s }
        return xmlResponse(
            XML.document("ListBucketResult") { x in
                x.element("Name", bucket)
                x.element("Prefix", enc(prefix))
                if v2 {
                    if let sa = c.query("start-after") { x.element("StartAfter", enc(sa)) }
                    if let token { x.element("ContinuationToken", token) }
                    if page.isTruncated, let next = page.nextMarker { x.element("NextContinuationToken", Base64.encode(Array(next.utf8))) }
                    x.element("KeyCount", "\(page.objects.count + page.commonPrefixes.count)")
                } else {
                    x.element("Marker", enc(marker))
                    if page.isTruncated, !delimiter.isEmpty, let next = page.nextMarker { x.element("NextMarker", enc(next)) }
                }
                x.element("MaxKeys", "\(maxKeys)")
                if !delimiter.isEmpty { x.element("Delimiter", enc(delimiter)) }
                if urlEncode { x.element("EncodingType", "url") }
                x.element("IsTruncated", page.isTruncated ? "true" : "false")
                for o in page.objects {
                    x.element("Contents") { x in
                        x.element("Key", enc(o.key))
                        x.element("LastModified", HTTPDate.iso8601(epochMs: o.lastModifiedMs))
                        x.element("ETag", "\"\(o.etag)\"")
                        x.element("Size", "\(o.size)")
                        x.element("StorageClass", "STANDARD")
                        if !v2 || c.query("fetch-owner") == "true" {
                            x.element("Owner") { x in
                                x.element("ID", owner.id); x.element("DisplayName", owner.name)
                            }
                        }
                    }
                }
                for p in page.commonPrefixes { x.element("CommonPrefixes") { x in x.element("Prefix", enc(p)) } }
            })
    }
}
