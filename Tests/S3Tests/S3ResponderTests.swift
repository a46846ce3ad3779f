import Foundation
import HTTPTypes
import Hummingbird
import InProcessHTTP
import Logging
import NIOCore
import Objects
import Security
import Testing

@testable import S3

/// The S3 responder in process, as Hummingbird's testing module drives a router: a signed
/// request goes straight to `respond(to:context:)` and the response is collected, with no socket
/// and no server, so each case takes milliseconds. The pytest suite keeps what needs real
/// clients (aws CLI, boto3, s3cmd, rclone) and real processes.
struct S3Harness {
    struct Keys: CredentialStore {
        func secret(forAccessKey id: String) -> String? { id == S3Harness.accessKey ? S3Harness.secret : nil }
    }
    static let accessKey = "STKTESTKEY0000000000", secret = "test-secret-0123456789abcdefghijklmnopqr"
    static let region = "us-east-1"
    /// 2026-12-03T12:00:00Z, the responder's clock and the signer's.
    static let nowMs: Int64 = 1_796_299_200_000

    let dir: String
    let responder: S3Responder

    init() throws {
        dir = NSTemporaryDirectory() + "s3-responder-\(UUID().uuidString)"
        let store = try ObjectStore(root: dir, clock: { S3Harness.nowMs })
        responder = S3Responder(
            store: store, credentials: Keys(), settings: S3Settings(region: Self.region),
            clock: { S3Harness.nowMs }, logger: Logger(label: "s3-test"))
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }

    struct Reply {
        var status: Int
        var headers: HTTPFields
        var body: String
        func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }
        /// The text of the first `<tag>` in the body.
        func xml(_ tag: String) -> String? {
            guard let a = body.range(of: "<\(tag)>"), let b = body.range(of: "</\(tag)>", range: a.upperBound..<body.endIndex) else { return nil }
            return String(body[a.upperBound..<b.lowerBound])
        }
    }

    /// Signs (SigV4, header form, payload hashed) and sends one request; `path` may carry a query.
    func send(
        _ method: HTTPRequest.Method, _ path: String, body: [UInt8] = [], headers extra: [String: String] = [:],
        secret: String = S3Harness.secret
    ) async throws -> Reply {
        let amzDate = "20261203T120000Z", date = "20261203"
        let (rawPath, rawQuery) = path.split(separator: "?", maxSplits: 1).map(String.init).splitPathQuery
        var signed: [String: String] = ["host": "localhost:9000", "x-amz-date": amzDate, "x-amz-content-sha256": Digest.sha256(body).hex]
        for (k, v) in extra { signed[k.lowercased()] = v }
        let names = signed.keys.sorted()
        var pairs: [String] = []
        for kv in rawQuery.split(separator: "&") {
            let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
            let k: String = SigV4.percentDecode(p[0]) ?? p[0]
            let v: String = p.count > 1 ? (SigV4.percentDecode(p[1]) ?? p[1]) : ""
            pairs.append(SigV4.uriEncode(k, slash: true) + "=" + SigV4.uriEncode(v, slash: true))
        }
        pairs.sort()  // '=' sorts below every encoded character, so this orders by key, then value
        let canonicalPath: String = SigV4.uriEncode(SigV4.percentDecode(rawPath) ?? rawPath, slash: false)
        let canonicalHeaders: String = names.map { "\($0):\(signed[$0]!)\n" }.joined()
        let lines: [String] = [
            method.rawValue, canonicalPath, pairs.joined(separator: "&"), canonicalHeaders,
            names.joined(separator: ";"), signed["x-amz-content-sha256"]!,
        ]
        let canonical = lines.joined(separator: "\n")
        let scope = "\(date)/\(Self.region)/s3/aws4_request"
        let toSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Digest.sha256(Array(canonical.utf8)).hex)"
        let signature = Digest.hmacSHA256(key: SigV4.signingKey(secret: secret, date: date, region: Self.region), Array(toSign.utf8)).hex
        var fields = HTTPFields()
        for n in names where n != "host" { fields[HTTPField.Name(n)!] = signed[n]! }
        fields[.authorization] = "AWS4-HMAC-SHA256 Credential=\(Self.accessKey)/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
        let r = try await InProcessHTTP.send(responder, method, path, headers: fields, body: body, authority: "localhost:9000")
        return Reply(status: r.status, headers: r.headers, body: r.text)
    }
}

extension Array where Element == String {
    var splitPathQuery: (String, String) { (self[0], count > 1 ? self[1] : "") }
}

@Suite struct S3ResponderTests {
    @Test func bucketAndObjectRoundTripWithETagAndListing() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        #expect(try await s3.send(.put, "/photos").status == 200)
        let put = try await s3.send(.put, "/photos/2026/cat.jpg", body: Array("meow".utf8), headers: ["content-type": "image/jpeg"])
        #expect(put.status == 200)
        #expect(put.header("ETag") == "\"\(Digest.md5(Array("meow".utf8)).hex)\"")
        let get = try await s3.send(.get, "/photos/2026/cat.jpg")
        #expect(get.status == 200 && get.body == "meow")
        #expect(get.header("Content-Type") == "image/jpeg")
        #expect(get.header("ETag") == put.header("ETag"))
        let list = try await s3.send(.get, "/photos?list-type=2&prefix=2026/")
        #expect(list.status == 200)
        #expect(list.xml("Key") == "2026/cat.jpg" && list.xml("KeyCount") == "1")
        let buckets = try await s3.send(.get, "/")
        #expect(buckets.xml("Name") == "photos")
    }

    @Test func rangeAndConditionalGets() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/bkt")
        let put = try await s3.send(.put, "/bkt/k", body: Array("0123456789".utf8))
        let etag = try #require(put.header("ETag"))
        let range = try await s3.send(.get, "/bkt/k", headers: ["range": "bytes=2-5"])
        #expect(range.status == 206 && range.body == "2345")
        #expect(range.header("Content-Range") == "bytes 2-5/10")
        #expect(try await s3.send(.get, "/bkt/k", headers: ["range": "bytes=20-30"]).status == 416)
        #expect(try await s3.send(.get, "/bkt/k", headers: ["if-none-match": etag]).status == 304)
        #expect(try await s3.send(.get, "/bkt/k", headers: ["if-match": "\"nope\""]).status == 412)
    }

    @Test func errorsAreS3XMLNamingTheResource() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        let missing = try await s3.send(.get, "/nobucket/k")
        #expect(missing.status == 404 && missing.xml("Code") == "NoSuchBucket")
        #expect(missing.header("Content-Type") == "application/xml")
        _ = try await s3.send(.put, "/bkt")
        let noKey = try await s3.send(.get, "/bkt/missing")
        #expect(noKey.status == 404 && noKey.xml("Code") == "NoSuchKey" && noKey.xml("Resource") == "/bkt/missing")
        #expect(noKey.header("x-amz-request-id")?.count == 16)
        let badName = try await s3.send(.put, "/Bad_Name")
        #expect(badName.status == 400 && badName.xml("Code") == "InvalidBucketName")
        let notEmpty = try await s3.send(.put, "/bkt/x", body: [1])
        #expect(notEmpty.status == 200)
        #expect(try await s3.send(.delete, "/bkt").xml("Code") == "BucketNotEmpty")
    }

    @Test func wrongSecretOrTamperedBodyIsRefused() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        let wrong = try await s3.send(.put, "/bkt", secret: "not-the-secret")
        #expect(wrong.status == 403 && wrong.xml("Code") == "SignatureDoesNotMatch")
        _ = try await s3.send(.put, "/bkt")
        // The signed payload hash says one thing, the body another.
        let tampered = try await s3.send(.put, "/bkt/k", body: Array("real".utf8), headers: ["x-amz-content-sha256": Digest.sha256(Array("fake".utf8)).hex])
        #expect(tampered.status == 400 && tampered.xml("Code") == "XAmzContentSHA256Mismatch")
        #expect(try await s3.send(.get, "/bkt/k").status == 404)
    }

    @Test func multipartUploadCompletesWithTheMultipartETag() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/bkt")
        let create = try await s3.send(.post, "/bkt/big?uploads")
        let upload = try #require(create.xml("UploadId"))
        let part1 = [UInt8](repeating: 0x61, count: 5 << 20), part2 = Array("tail".utf8)
        let e1 = try #require(try await s3.send(.put, "/bkt/big?partNumber=1&uploadId=\(upload)", body: part1).header("ETag"))
        let e2 = try #require(try await s3.send(.put, "/bkt/big?partNumber=2&uploadId=\(upload)", body: part2).header("ETag"))
        let complete =
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\(e1)</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\(e2)</ETag></Part></CompleteMultipartUpload>"
        let done = try await s3.send(.post, "/bkt/big?uploadId=\(upload)", body: Array(complete.utf8))
        #expect(done.status == 200)
        let md5s = Digest.md5(part1) + Digest.md5(part2)
        #expect(done.xml("ETag")?.replacingOccurrences(of: "&quot;", with: "\"") == "\"\(Digest.md5(md5s).hex)-2\"")
        let head = try await s3.send(.head, "/bkt/big")
        #expect(head.status == 200 && head.header("Content-Length") == "\((5 << 20) + 4)")
        // A part below 5 MiB that is not the last is refused.
        let again = try #require(try await s3.send(.post, "/bkt/small?uploads").xml("UploadId"))
        let s1 = try #require(try await s3.send(.put, "/bkt/small?partNumber=1&uploadId=\(again)", body: [1]).header("ETag"))
        let s2 = try #require(try await s3.send(.put, "/bkt/small?partNumber=2&uploadId=\(again)", body: [2]).header("ETag"))
        let tooSmall =
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\(s1)</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\(s2)</ETag></Part></CompleteMultipartUpload>"
        #expect(try await s3.send(.post, "/bkt/small?uploadId=\(again)", body: Array(tooSmall.utf8)).xml("Code") == "EntityTooSmall")
    }

    @Test func listingWithDelimiterGroupsCommonPrefixes() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/bkt")
        for k in ["a/1", "a/2", "b/1", "top"] { _ = try await s3.send(.put, "/bkt/\(k)", body: [1]) }
        let l = try await s3.send(.get, "/bkt?list-type=2&delimiter=/")
        #expect(l.body.components(separatedBy: "<CommonPrefixes>").count - 1 == 2)
        #expect(l.body.contains("<Prefix>a/</Prefix>") && l.body.contains("<Prefix>b/</Prefix>"))
        #expect(l.xml("Key") == "top" && l.xml("KeyCount") == "3")
        let page = try await s3.send(.get, "/bkt?list-type=2&max-keys=2")
        #expect(page.xml("IsTruncated") == "true" && page.xml("NextContinuationToken") != nil)
    }

    @Test func bucketLifecycleCodes() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        #expect(try await s3.send(.put, "/life").status == 200)
        #expect(try await s3.send(.put, "/life").status == 200, "the owner creating it again in us-east-1, as AWS answers")
        #expect(try await s3.send(.head, "/life").status == 200)
        _ = try await s3.send(.put, "/life/k", body: [1])
        let notEmpty = try await s3.send(.delete, "/life")
        #expect(notEmpty.status == 409 && notEmpty.xml("Code") == "BucketNotEmpty")
        #expect(try await s3.send(.delete, "/life/k").status == 204)
        #expect(try await s3.send(.delete, "/life/k").status == 204)  // a missing key is not an error
        #expect(try await s3.send(.delete, "/life").status == 204)
        #expect(try await s3.send(.head, "/life").status == 404)
        for (m, path) in [(HTTPRequest.Method.delete, "/life"), (.get, "/life/k"), (.put, "/life/k"), (.get, "/life?list-type=2")] {
            #expect(try await s3.send(m, path, body: m == .put ? [1] : []).xml("Code") == "NoSuchBucket", "\(m) \(path)")
        }
        #expect(try await s3.send(.get, "/").xml("Name") == nil)
    }

    @Test func metadataAndOverwrite() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/meta")
        _ = try await s3.send(
            .put, "/meta/m.txt", body: Array("hello".utf8),
            headers: ["content-type": "text/plain; charset=utf-8", "x-amz-meta-color": "blue", "x-amz-meta-multi-word": "Value With Spaces"])
        let head = try await s3.send(.head, "/meta/m.txt")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.header("Content-Type") == "text/plain; charset=utf-8" && head.header("Content-Length") == "5")
        #expect(head.header("x-amz-meta-color") == "blue" && head.header("x-amz-meta-multi-word") == "Value With Spaces")
        #expect(head.header("Last-Modified") != nil)
        _ = try await s3.send(.put, "/meta/m.txt", body: Array("second".utf8))
        let get = try await s3.send(.get, "/meta/m.txt")
        #expect(get.body == "second" && get.header("x-amz-meta-color") == nil)
        #expect(try await s3.send(.head, "/meta/missing").status == 404)
    }

    @Test func copyKeepsOrReplacesMetadata() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/src")
        _ = try await s3.send(.put, "/src/a", body: Array("payload".utf8), headers: ["x-amz-meta-k": "v", "content-type": "text/x-a"])
        let copied = try await s3.send(.put, "/src/b", headers: ["x-amz-copy-source": "/src/a"])
        #expect(copied.status == 200 && copied.xml("ETag") != nil)
        let b = try await s3.send(.get, "/src/b")
        #expect(b.body == "payload" && b.header("x-amz-meta-k") == "v" && b.header("Content-Type") == "text/x-a")
        _ = try await s3.send(.put, "/src/c", headers: ["x-amz-copy-source": "/src/a", "x-amz-metadata-directive": "REPLACE", "x-amz-meta-k": "new"])
        #expect(try await s3.send(.head, "/src/c").header("x-amz-meta-k") == "new")
        let missing = try await s3.send(.put, "/src/d", headers: ["x-amz-copy-source": "/src/nope"])
        #expect(missing.status == 404 && missing.xml("Code") == "NoSuchKey")
    }

    @Test func deleteObjectsReportsEachKey() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/batch")
        for k in ["x", "y"] { _ = try await s3.send(.put, "/batch/\(k)", body: [1]) }
        let xml = "<Delete><Object><Key>x</Key></Object><Object><Key>y</Key></Object><Object><Key>never</Key></Object></Delete>"
        let r = try await s3.send(.post, "/batch?delete", body: Array(xml.utf8), headers: ["content-md5": Base64.encode(Digest.md5(Array(xml.utf8)))])
        #expect(r.status == 200)
        #expect(r.body.components(separatedBy: "<Deleted>").count - 1 == 3)  // a missing key is deleted too, as on S3
        #expect(try await s3.send(.get, "/batch?list-type=2").xml("KeyCount") == "0")
    }

    @Test func abortedUploadIsGoneAndListed() async throws {
        let s3 = try S3Harness()
        defer { s3.cleanUp() }
        _ = try await s3.send(.put, "/mpu")
        let id = try #require(try await s3.send(.post, "/mpu/k?uploads").xml("UploadId"))
        _ = try await s3.send(.put, "/mpu/k?partNumber=1&uploadId=\(id)", body: [1, 2, 3])
        let uploads = try await s3.send(.get, "/mpu?uploads")
        #expect(uploads.xml("UploadId") == id && uploads.xml("Key") == "k")
        let parts = try await s3.send(.get, "/mpu/k?uploadId=\(id)")
        #expect(parts.xml("PartNumber") == "1" && parts.xml("Size") == "3")
        #expect(try await s3.send(.delete, "/mpu/k?uploadId=\(id)").status == 204)
        #expect(try await s3.send(.get, "/mpu/k?uploadId=\(id)").xml("Code") == "NoSuchUpload")
        #expect(try await s3.send(.get, "/mpu?uploads").xml("UploadId") == nil)
    }
}
