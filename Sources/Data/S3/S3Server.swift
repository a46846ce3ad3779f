import DataPlane
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Objects
import Security
import Telemetry

/// Settings of the S3 endpoint.
public struct S3Settings: Sendable {
    public var region: String
    /// When set, `bucket.<baseDomain>` hosts address buckets virtual-host style.
    public var baseDomain: String?
    /// Bytes handed to the disk per thread-pool hop while streaming a body in.
    public var ingestBatchBytes = 1 << 20
    public init(region: String, baseDomain: String? = nil) { self.region = region; self.baseDomain = baseDomain }
}

/// Bucket creation and deletion for a cluster: every node must agree, so a cluster decides them
/// in its replicated state and mirrors the result into each node's store.
public protocol BucketCatalog: Sendable {
    /// Throws `ObjectError.bucketAlreadyOwnedByYou` when `owner` (an access key) already has it,
    /// S3's BucketAlreadyExists when another user does; the bucket exists in the local store on
    /// return. `scheme`: the `x-stacks-scheme` header (K+M or auto), checked here.
    func createBucket(_ name: String, scheme: String?, owner: String) async throws
    /// Throws `ObjectError.noSuchBucket` or `.bucketNotEmpty`.
    func deleteBucket(_ name: String) async throws
}

/// The S3 API over one node's object store: routing, SigV4, and the operations.
public struct S3Responder: HTTPResponder {
    public typealias Context = BasicRequestContext
    let store: ObjectStore
    let credentials: any CredentialStore
    let settings: S3Settings
    let pool: NIOThreadPool
    let clock: @Sendable () -> Int64
    let logger: Logger
    let catalog: (any BucketCatalog)?
    let metrics: S3Metrics
    /// Objects across the cluster, once the layout has more than one node; until then (and
    /// without it) objects live in this node's store.
    let plane: DataPlane?

    /// `catalog`: where bucket creation and deletion are decided (the cluster state); nil
    /// means this node's store alone decides.
    public init(
        store: ObjectStore, credentials: any CredentialStore, settings: S3Settings, catalog: (any BucketCatalog)? = nil,
        pool: NIOThreadPool = .singleton, clock: @escaping @Sendable () -> Int64, logger: Logger, metrics: Metrics = .disabled,
        plane: DataPlane? = nil
    ) {
        self.store = store; self.credentials = credentials; self.settings = settings; self.catalog = catalog; self.plane = plane
        self.pool = pool; self.clock = clock; self.logger = logger; self.metrics = S3Metrics(metrics: metrics)
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let requestID = Sodium.randomBytes(8).hex.uppercased()
        let started = ContinuousClock.now
        var response: Response
        var call: S3Call?
        defer {
            let elapsed = (ContinuousClock.now - started).components
            metrics.record(
                S3Call.operation(request.method, call, copySource: request.headers[.init("x-amz-copy-source")!] != nil),
                status: response.status.code, nanoseconds: elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000,
                bytesIn: request.headers[.contentLength].flatMap { Int($0) } ?? 0,
                bytesOut: request.method == .head ? 0 : response.headers[.contentLength].flatMap { Int($0) } ?? 0)
        }
        do {
            let parsed = try S3Call(request: request, settings: settings)
            call = parsed
            let principal = try SigV4(credentials: credentials, region: settings.region, nowMs: clock()).verify(parsed.signed)
            guard let principal else { throw S3Error.accessDenied("Anonymous access is not allowed; sign the request with SigV4.") }
            response = try await route(parsed, request: request, principal: principal)
        } catch let e as S3Error {
            response = errorResponse(e, request: request)
        } catch let e as PlaneError {
            logger.warning("cluster data path failed", metadata: ["error": "\(e)", "path": "\(request.uri.path)"])
            response = errorResponse(S3Error(503, "ServiceUnavailable", "\(e.description); retry shortly"), request: request)
        } catch let e as ObjectError {
            if case .storage = e { logger.error("storage failure", metadata: ["error": "\(e)", "path": "\(request.uri.path)"]) }
            response = errorResponse(S3Error(e), request: request)
        } catch {
            logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            response = errorResponse(S3Error(500, "InternalError", "We encountered an internal error. Please try again."), request: request)
        }
        response.headers[.init("x-amz-request-id")!] = requestID
        response.headers[.server] = "Stacks"
        return response
    }

    func errorResponse(_ e: S3Error, request: Request) -> Response {
        var e = e
        e.resource = request.uri.path
        var headers = HTTPFields()
        headers[.contentType] = "application/xml"
        let body = request.method == .head ? ByteBuffer() : ByteBuffer(string: e.xml)
        headers[.contentLength] = "\(body.readableBytes)"
        return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: body))
    }

    /// Refuses what the request's key may not do on its bucket (and, for a copy, on the source's).
    func authorize(_ c: S3Call, source: CopySource?, request: Request, principal: Principal) throws {
        guard let bucket = c.bucket else { return }
        let m = request.method
        let needed: BucketRights
        if c.key == nil {
            switch m {
            case .put: return  // creation is checked where it happens
            case .delete: needed = .own
            case .post: needed = .write
            default: needed = .read
            }
        } else {
            needed = m == .get || m == .head ? .read : .write
        }
        try check(needed, on: bucket, principal: principal)
        if let source { try check(.read, on: source.bucket, principal: principal) }
    }

    /// 404 NoSuchBucket where `bucket` does not exist, 403 where it does and the key lacks `needed`.
    func check(_ needed: BucketRights, on bucket: String, principal: Principal) throws {
        guard credentials.rights(of: principal.accessKey, on: bucket).contains(needed) else {
            guard credentials.bucketExists(bucket) else { throw S3Error(ObjectError.noSuchBucket(bucket)) }
            throw S3Error.accessDenied()
        }
    }

    func route(_ c: S3Call, request: Request, principal: Principal) async throws -> Response {
        let m = request.method
        let source = try c.copySource()
        try authorize(c, source: source, request: request, principal: principal)
        guard let bucket = c.bucket else {
            guard m == .get else { throw S3Error.methodNotAllowed }
            return try await listBuckets(principal: principal)
        }
        guard let key = c.key else {
            switch m {
            case .put: return try await createBucket(bucket, request: request, principal: principal)
            case .head: _ = try await blocking { try store.bucket(bucket) }; return .init(status: .ok)
            case .delete:
                if let plane = try spread(bucket) {
                    _ = try await blocking { try store.bucket(bucket) }
                    let page = try await plane.list(bucket: bucket, prefix: "", delimiter: "", marker: "", maxKeys: 1)
                    guard page.objects.isEmpty else { throw ObjectError.bucketNotEmpty(bucket) }
                    let uploads = try await plane.uploads(bucket: bucket, prefix: "", keyMarker: "", uploadIDMarker: "", limit: 1)
                    guard uploads.uploads.isEmpty else { throw ObjectError.bucketNotEmpty(bucket) }
                }
                if let catalog { try await catalog.deleteBucket(bucket) } else { try await blocking { try store.deleteBucket(bucket) } }
                return .init(status: .noContent)
            case .get:
                if c.has("location") { return try await location(bucket) }
                if c.has("uploads") { return try await listUploads(bucket, c) }
                for unsupported in ["versioning", "acl", "policy", "lifecycle", "cors", "tagging", "website", "versions", "encryption", "object-lock"]
                where c.has(unsupported) {
                    throw S3Error.notImplemented
                }
                return try await listObjects(bucket, c)
            case .post:
                if c.has("delete") { return try await deleteObjects(bucket, request: request, principal: principal, call: c) }
                throw S3Error.notImplemented
            default: throw S3Error.methodNotAllowed
            }
        }
        switch m {
        case .put:
            if let uploadID = c.query("uploadId") {
                if source != nil { throw S3Error.notImplemented }
                return try await uploadPart(bucket, key, uploadID: uploadID, call: c, request: request, principal: principal)
            }
            if let source {
                return try await copyObject(bucket, key, source: source, call: c)
            }
            return try await putObject(bucket, key, call: c, request: request, principal: principal)
        case .get, .head:
            if let uploadID = c.query("uploadId"), m == .get { return try await listParts(bucket, key, uploadID: uploadID) }
            return try await getObject(bucket, key, call: c, request: request)
        case .delete:
            if let uploadID = c.query("uploadId") {
                if let plane = try spreadUpload(uploadID, bucket, key) {
                    try await plane.abortUpload(bucket: bucket, key: key, uploadID: uploadID)
                } else {
                    try await blocking { try store.abortUpload(uploadID: uploadID, bucket: bucket, key: key) }
                }
                return .init(status: .noContent)
            }
            try await deleteObject(bucket, key)
            return .init(status: .noContent)
        case .post:
            if c.has("uploads") { return try await createUpload(bucket, key, call: c) }
            if let uploadID = c.query("uploadId") {
                return try await completeUpload(bucket, key, uploadID: uploadID, request: request, principal: principal, call: c)
            }
            throw S3Error.notImplemented
        default:
            throw S3Error.methodNotAllowed
        }
    }

    /// The cluster's data plane when `bucket`'s objects spread over the cluster.
    func spread(_ bucket: String, _ key: String = "") throws -> DataPlane? {
        guard let plane, try plane.map.placement(bucket: bucket, key: key) != nil else { return nil }
        return plane
    }

    func deleteObject(_ bucket: String, _ key: String) async throws {
        _ = try await blocking { try store.bucket(bucket) }
        if let plane = try spread(bucket, key) {
            try ObjectStore.checkKey(key)
            try await plane.delete(bucket: bucket, key: key)
            // A copy kept from before the cluster grew must not show through again.
            try await blocking { try store.deleteObject(bucket: bucket, key: key) }
        } else {
            try await blocking { try store.deleteObject(bucket: bucket, key: key) }
        }
    }

    /// Runs blocking disk work on the thread pool, never on an event loop.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    func xmlResponse(_ xml: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/xml"
        let body = ByteBuffer(string: xml)
        headers[.contentLength] = "\(body.readableBytes)"
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }
}

/// A request's S3 addressing: bucket, key and query, decoded once.
struct S3Call {
    var bucket: String?
    var key: String?
    var queryItems: [(String, String)]
    var signed: SignedRequest

    init(request: Request, settings: S3Settings) throws(S3Error) {
        let rawPath = request.uri.path
        var items: [(String, String)] = []
        for pair in (request.uri.query ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = SigV4.percentDecode(kv[0]), let v = SigV4.percentDecode(kv.count > 1 ? kv[1] : "") else {
                throw S3Error.invalidArgument("malformed query string")
            }
            items.append((k, v))
        }
        queryItems = items
        var headers: [String: String] = [:]
        for f in request.headers {
            let n = f.name.canonicalName
            headers[n] = headers[n].map { $0 + "," + f.value } ?? f.value
        }
        if headers["host"] == nil, let a = request.head.authority { headers["host"] = a }
        signed = SignedRequest(method: request.method.rawValue, rawPath: rawPath, query: items, headers: headers)

        guard let path = SigV4.percentDecode(rawPath) else { throw S3Error.invalidArgument("malformed percent-encoding in path") }
        var rest = Substring(path)
        if let domain = settings.baseDomain, let host = headers["host"]?.split(separator: ":").first,
            host.hasSuffix("." + domain)
        {
            bucket = String(host.dropLast(domain.count + 1))
            rest = rest.dropFirst()
        } else {
            rest = rest.dropFirst()
            if !rest.isEmpty {
                let b = rest.prefix { $0 != "/" }
                bucket = String(b)
                rest = rest.dropFirst(b.count + 1)
            }
        }
        if !rest.isEmpty {
            guard !rest.utf8.contains(0) else { throw S3Error.invalidArgument("Object key must not contain a NUL character") }
            key = String(rest)
        }
    }

    /// What a PUT of an object copies (CopyObject, UploadPartCopy); read after the signature is
    /// checked, so a stranger learns nothing from how it is refused.
    func copySource() throws(S3Error) -> CopySource? {
        guard key != nil, signed.method == "PUT", let source = signed.headers["x-amz-copy-source"] else { return nil }
        return try CopySource(header: source)
    }

    func query(_ name: String) -> String? { queryItems.first { $0.0 == name }?.1 }
    func has(_ name: String) -> Bool { queryItems.contains { $0.0 == name } }
}
