import Security
import Testing

@testable import S3

struct FixedKeys: CredentialStore {
    func secret(forAccessKey id: String) -> String? { id == "AKIAIOSFODNN7EXAMPLE" ? "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" : nil }
}

/// The worked examples of AWS's "Signature Calculations for the Authorization Header" documentation.
@Suite struct SigV4Tests {
    let t20130524: Int64 = 1_369_353_600_000
    var sig: SigV4 { SigV4(credentials: FixedKeys(), region: "us-east-1", nowMs: t20130524) }

    func getObject(signature: String, accessKey: String = "AKIAIOSFODNN7EXAMPLE") -> SignedRequest {
        SignedRequest(
            method: "GET", rawPath: "/test.txt", query: [],
            headers: [
                "host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
                "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "x-amz-date": "20130524T000000Z",
                "authorization":
                    "AWS4-HMAC-SHA256 Credential=\(accessKey)/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=\(signature)",
            ])
    }

    @Test func awsExampleVerifies() throws {
        let p = try sig.verify(getObject(signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))
        #expect(p?.accessKey == "AKIAIOSFODNN7EXAMPLE")
    }

    @Test func tamperedUnknownAndSkewedAreRefused() throws {
        #expect(throws: S3Error.signatureMismatch()) {
            try sig.verify(getObject(signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42"))
        }
        #expect(throws: S3Error.self) { try sig.verify(getObject(signature: "x", accessKey: "NOPE")) }
        let late = SigV4(credentials: FixedKeys(), region: "us-east-1", nowMs: t20130524 + 16 * 60_000)
        #expect(throws: S3Error.self) {
            try late.verify(getObject(signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))
        }
    }

    /// During a key rotation's grace a key has two secrets: a request signed with either
    /// verifies, and the streaming signer carries the one that matched.
    @Test func aRotatedKeyTakesEitherSecretDuringItsGrace() throws {
        struct Rotated: CredentialStore {
            var secrets: [String]
            func secret(forAccessKey id: String) -> String? { secrets.first }
            func secrets(forAccessKey id: String) -> [String] { id == "AKIAIOSFODNN7EXAMPLE" ? secrets : [] }
        }
        let old = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", signed = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        let grace = SigV4(credentials: Rotated(secrets: ["new-secret", old]), region: "us-east-1", nowMs: t20130524)
        let p = try #require(try grace.verify(getObject(signature: signed)))
        #expect(p.signingKey == SigV4.signingKey(secret: old, date: "20130524", region: "us-east-1"))
        let after = SigV4(credentials: Rotated(secrets: ["new-secret"]), region: "us-east-1", nowMs: t20130524)
        #expect(throws: S3Error.signatureMismatch()) { try after.verify(getObject(signature: signed)) }
    }

    @Test func streamingChunksVerifyAndTamperingIsCaught() throws {
        let headers = [
            "host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding": "aws-chunked",
            "content-length": "66824", "x-amz-decoded-content-length": "66560",
            "authorization":
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ]
        let p = try #require(try sig.verify(SignedRequest(method: "PUT", rawPath: "/examplebucket/chunkObject.txt", query: [], headers: headers)))
        func body(_ firstSig: String) -> [UInt8] {
            Array("10000;chunk-signature=\(firstSig)\r\n".utf8) + [UInt8](repeating: 97, count: 65536) + Array("\r\n".utf8)
                + Array("400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n".utf8)
                + [UInt8](repeating: 97, count: 1024) + Array("\r\n".utf8)
                + Array("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n".utf8)
        }
        var d = AWSChunkedDecoder(signer: p, withTrailers: false)
        let good = body("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
        var out: [UInt8] = []
        var i = 0
        while i < good.count {  // arbitrary network-sized pieces
            let n = min(1000, good.count - i)
            out += try d.feed(good[i..<(i + n)]); i += n
        }
        #expect(d.isDone)
        #expect(out == [UInt8](repeating: 97, count: 66560))

        var bad = AWSChunkedDecoder(signer: p, withTrailers: false)
        #expect(throws: S3Error.signatureMismatch()) {
            _ = try bad.feed(body("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288649")[...])
        }
    }

    @Test func unsignedTrailerBody() throws {
        var d = AWSChunkedDecoder(signer: nil, withTrailers: true)
        let out = try d.feed(Array("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n".utf8)[...])
        #expect(out == Array("hello".utf8))
        #expect(d.isDone)
        #expect(d.trailers["x-amz-checksum-crc32"] == "NhCmhg==")
    }

    @Test func ranges() {
        #expect(ByteRange.parse("bytes=0-9", size: 100) == .some(0..<10))
        #expect(ByteRange.parse("bytes=90-", size: 100) == .some(90..<100))
        #expect(ByteRange.parse("bytes=-10", size: 100) == .some(90..<100))
        #expect(ByteRange.parse("bytes=95-200", size: 100) == .some(95..<100))
        #expect(ByteRange.parse("bytes=100-200", size: 100) == .some(nil))
        #expect(ByteRange.parse("bytes=9-3", size: 100) == nil)
        #expect(ByteRange.parse("lines=1-2", size: 100) == nil)
    }

    @Test func dates() {
        #expect(HTTPDate.rfc7231(epochSeconds: 1_369_353_600) == "Fri, 24 May 2013 00:00:00 GMT")
        #expect(HTTPDate.parse("Fri, 24 May 2013 00:00:00 GMT") == 1_369_353_600)
        #expect(HTTPDate.iso8601(epochMs: 1_369_353_600_123) == "2013-05-24T00:00:00.123Z")
        #expect(SigV4.epochSeconds("20130524T000000Z") == 1_369_353_600)
    }
}
