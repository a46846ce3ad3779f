import Checksum
import ChunkStore
import DataPlane
import Hummingbird
import NIOCore
import NIOPosix
import Objects
import Security

/// A request body streamed into a new shard, with every digest the client asked us to check.
struct Ingested: Sendable {
    var part: PartRef
    var checksums: [Metadatum]
    /// Where the bytes went: a local shard file, or a write spreading over the cluster.
    var sink: any BodySink
}

/// Where an ingested body streams: this node's shard file, or the cluster's stripes.
protocol BodySink: Sendable {
    var id: String { get }
    func append(_ bytes: [UInt8]) async throws
    /// The body ended and passed its checks.
    func finish() async throws
    func abort() async
}

struct LocalSink: BodySink {
    let id: String
    let writer: ShardWriter
    let pool: NIOThreadPool
    func append(_ bytes: [UInt8]) async throws { try await pool.runIfActive { try writer.append(bytes) } }
    func finish() async throws { try await pool.runIfActive { try writer.finish() } }
    func abort() async { writer.abort() }
}

/// Committed after the body's checks, with the metadata they produce (`PutStream.commit`).
extension PutStream: BodySink {
    public var id: String { "" }
    public func finish() async throws {}
}

extension S3Responder {
    static let maxSinglePut = 5 << 30

    /// Streams the body into a fresh shard file (or the sink `into` makes for the body's size).
    /// Verifies length, Content-MD5, the SigV4 payload hash or chunk signatures, and
    /// `x-amz-checksum-*` (header or trailer). On any failure the shard is removed and nothing
    /// becomes visible.
    func ingest(
        _ request: Request, call: S3Call, principal: Principal, into makeSink: (@Sendable (Int) async throws -> any BodySink)? = nil
    ) async throws -> Ingested {
        let h = call.signed.headers
        let contentSHA = h["x-amz-content-sha256"] ?? "UNSIGNED-PAYLOAD"
        let chunked = contentSHA.hasPrefix("STREAMING-")
        var decoder: AWSChunkedDecoder? = nil
        let expected: Int
        if chunked {
            switch contentSHA {
            case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": decoder = AWSChunkedDecoder(signer: principal, withTrailers: false)
            case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": decoder = AWSChunkedDecoder(signer: principal, withTrailers: true)
            case "STREAMING-UNSIGNED-PAYLOAD-TRAILER": decoder = AWSChunkedDecoder(signer: nil, withTrailers: true)
            default: throw S3Error.invalidArgument("unsupported x-amz-content-sha256 \(contentSHA)")
            }
            guard let n = h["x-amz-decoded-content-length"].flatMap(Int.init), n >= 0 else {
                throw S3Error(411, "MissingContentLength", "aws-chunked uploads need x-amz-decoded-content-length")
            }
            expected = n
        } else {
            guard let n = h["content-length"].flatMap(Int.init), n >= 0 else {
                throw S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
            }
            expected = n
        }
        guard expected <= Self.maxSinglePut else {
            throw S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
        }
        let payloadSHA: [UInt8]?
        if chunked || contentSHA == "UNSIGNED-PAYLOAD" {
            payloadSHA = nil
        } else {
            guard let v = bytes(fromHex: contentSHA), v.count == 32 else {
                throw S3Error(400, "InvalidArgument", "x-amz-content-sha256 must be a SHA-256 hex digest, UNSIGNED-PAYLOAD or STREAMING-*")
            }
            payloadSHA = v
        }
        let contentMD5: [UInt8]?
        if let m = h["content-md5"] {
            guard let v = Base64.decode(m), v.count == 16 else { throw S3Error(400, "InvalidDigest", "The Content-MD5 you specified is not valid.") }
            contentMD5 = v
        } else {
            contentMD5 = nil
        }
        var wanted = try ChecksumSet(headers: h)

        let sink: any BodySink
        if let makeSink {
            sink = try await makeSink(expected)
        } else {
            let (id, writer) = try await blocking { try store.newShard() }
            sink = LocalSink(id: id, writer: writer, pool: pool)
        }
        do {
            let md5 = Digest(.md5)
            let sha = payloadSHA == nil ? nil : Digest(.sha256)
            var pending: [UInt8] = []
            pending.reserveCapacity(settings.ingestBatchBytes)
            var received = 0
            do {
                for try await buffer in request.body {
                    let raw = Array(buffer.readableBytesView)
                    let payload: [UInt8]
                    if decoder != nil { payload = try decoder!.feed(raw[...]) } else { sha?.update(raw); payload = raw }
                    received += payload.count
                    guard received <= expected else { throw S3Error.invalidRequest("body is longer than its declared length") }
                    md5.update(payload)
                    wanted.update(payload)
                    pending.append(contentsOf: payload)
                    if pending.count >= settings.ingestBatchBytes {
                        try await sink.append(pending)
                        pending.removeAll(keepingCapacity: true)
                    }
                }
            } catch let e as S3Error {
                throw e
            } catch let e as PlaneError {
                throw e  // the cluster, not the client, failed
            } catch {
                throw S3Error.incompleteBody  // the client went away mid-body
            }
            guard received == expected, decoder?.isDone ?? true else { throw S3Error.incompleteBody }
            let md5Bytes = md5.finish()
            if let contentMD5, contentMD5 != md5Bytes {
                throw S3Error.badDigest("The Content-MD5 you specified did not match what we received.")
            }
            if let payloadSHA, let sha, sha.finish() != payloadSHA {
                throw S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
            let checksums = try wanted.verify(trailers: decoder?.trailers ?? [:])
            try await sink.append(pending)
            try await sink.finish()
            return Ingested(part: PartRef(shardID: sink.id, size: received, etag: md5Bytes.hex), checksums: checksums, sink: sink)
        } catch {
            await sink.abort()
            throw error
        }
    }
}

/// The `x-amz-checksum-*` algorithms a client may ask us to verify on write.
struct ChecksumSet {
    enum Algorithm: String, CaseIterable { case crc32, crc32c, sha256 }
    var crc32: UInt32 = 0, crc32c: UInt32 = 0
    var sha: Digest? = nil
    /// Algorithm → expected base64 value; nil value means "arrives in a trailer".
    var expected: [Algorithm: String?] = [:]

    init(headers h: [String: String]) throws(S3Error) {
        for a in Algorithm.allCases {
            if let v = h["x-amz-checksum-\(a.rawValue)"] { expected[a] = .some(v) }
        }
        for t in (h["x-amz-trailer"] ?? "").split(separator: ",") {
            let name = t.trimmingSpaces.lowercased()
            guard name.hasPrefix("x-amz-checksum-") else { continue }
            guard let a = Algorithm(rawValue: String(name.dropFirst("x-amz-checksum-".count))) else {
                throw S3Error.invalidRequest("unsupported checksum trailer \(name); supported: crc32, crc32c, sha256")
            }
            expected[a] = .some(nil)
        }
        if let algo = h["x-amz-sdk-checksum-algorithm"]?.lowercased(), Algorithm(rawValue: algo) == nil {
            throw S3Error.invalidRequest("unsupported checksum algorithm \(algo); supported: CRC32, CRC32C, SHA256")
        }
        if expected[.sha256] != nil { sha = Digest(.sha256) }
    }

    mutating func update(_ bytes: [UInt8]) {
        if expected[.crc32] != nil { crc32 = Checksum.crc32(bytes, seed: crc32) }
        if expected[.crc32c] != nil { crc32c = Checksum.crc32c(bytes, seed: crc32c) }
        sha?.update(bytes)
    }

    func verify(trailers: [String: String]) throws(S3Error) -> [Metadatum] {
        var out: [Metadatum] = []
        let shaValue = sha?.finish()
        for a in Algorithm.allCases {
            guard let declared = expected[a] else { continue }
            guard let value = declared ?? trailers["x-amz-checksum-\(a.rawValue)"] else {
                throw S3Error.invalidRequest("x-amz-checksum-\(a.rawValue) trailer was announced but not sent")
            }
            let actual: [UInt8]
            switch a {
            case .crc32: actual = withUnsafeBytes(of: crc32.bigEndian) { Array($0) }
            case .crc32c: actual = withUnsafeBytes(of: crc32c.bigEndian) { Array($0) }
            case .sha256: actual = shaValue ?? []
            }
            guard Base64.decode(value) != nil else {
                throw S3Error.invalidRequest("Value for x-amz-checksum-\(a.rawValue) header is invalid.")
            }
            guard Base64.decode(value) == actual else {
                throw S3Error.badDigest("The \(a.rawValue.uppercased()) you specified did not match the calculated checksum.")
            }
            out.append(Metadatum(a.rawValue, value))
        }
        return out
    }
}
