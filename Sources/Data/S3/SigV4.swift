import Security

/// Looks up the secret for an access key id, and what that key may do.
public protocol CredentialStore: Sendable {
    func secret(forAccessKey id: String) -> String?
    /// Every secret a signature by `id` may be made with (during a key rotation's grace, the
    /// new one and the one before); empty for an unknown key.
    func secrets(forAccessKey id: String) -> [String]
    /// What `accessKey` may do with `bucket`; a store without users lets every key do everything.
    func rights(of accessKey: String, on bucket: String) -> BucketRights
    /// Whether `bucket` exists, to tell a caller without rights 404 from 403.
    func bucketExists(_ bucket: String) -> Bool
    func mayCreateBuckets(_ accessKey: String) -> Bool
    /// Who owns `bucket`, and who `accessKey` is, as listings show them.
    func owner(of bucket: String) -> BucketOwner
    func user(_ accessKey: String) -> BucketOwner
}

public struct BucketRights: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = BucketRights(rawValue: 1)
    public static let write = BucketRights(rawValue: 2)
    /// Delete the bucket itself.
    public static let own = BucketRights(rawValue: 4)
    public static let all: BucketRights = [.read, .write, .own]
}

public struct BucketOwner: Sendable, Equatable {
    public var id: String
    public var name: String
    public init(id: String, name: String) { self.id = id; self.name = name }
    public static let stacks = BucketOwner(id: "stacks", name: "stacks")
}

extension CredentialStore {
    public func secrets(forAccessKey id: String) -> [String] { secret(forAccessKey: id).map { [$0] } ?? [] }
    public func rights(of accessKey: String, on bucket: String) -> BucketRights { .all }
    public func bucketExists(_ bucket: String) -> Bool { true }
    public func mayCreateBuckets(_ accessKey: String) -> Bool { true }
    public func owner(of bucket: String) -> BucketOwner { .stacks }
    public func user(_ accessKey: String) -> BucketOwner { .stacks }
}

/// What a verified request proved: who signed it, and what streaming chunks must be signed with.
struct Principal: Sendable {
    var accessKey: String
    var signingKey: [UInt8]
    var amzDate: String
    var scope: String
    var seedSignature: String
}

/// The parts of a request SigV4 covers, independent of the HTTP library.
struct SignedRequest {
    var method: String
    /// Path as received (still percent-encoded).
    var rawPath: String
    /// Decoded query parameters, in order.
    var query: [(String, String)]
    /// Lower-cased header name → value (repeated headers joined by ",").
    var headers: [String: String]
}

/// AWS Signature Version 4 (header and presigned query forms), per the AWS SigV4 reference.
struct SigV4 {
    let credentials: any CredentialStore
    let region: String
    /// Milliseconds since the epoch.
    let nowMs: Int64
    static let maxSkewSeconds: Int64 = 15 * 60

    func verify(_ r: SignedRequest) throws(S3Error) -> Principal? {
        if let auth = r.headers["authorization"] {
            return try verifyHeader(r, auth)
        }
        if r.query.contains(where: { $0.0 == "X-Amz-Signature" }) {
            return try verifyPresigned(r)
        }
        if r.query.contains(where: { $0.0 == "AWSAccessKeyId" || $0.0 == "Signature" }) {
            throw S3Error.accessDenied("Signature Version 2 is not supported; use Signature Version 4.")
        }
        return nil
    }

    private func verifyHeader(_ r: SignedRequest, _ auth: String) throws(S3Error) -> Principal {
        guard auth.hasPrefix("AWS4-HMAC-SHA256 ") else {
            if auth.hasPrefix("AWS ") { throw S3Error.accessDenied("Signature Version 2 is not supported; use Signature Version 4.") }
            throw S3Error.invalidArgument("Unsupported Authorization Type")
        }
        var fields: [String: String] = [:]
        for part in auth.dropFirst("AWS4-HMAC-SHA256 ".count).split(separator: ",") {
            let kv = part.trimmingSpaces.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { throw S3Error.invalidArgument("malformed Authorization header") }
            fields[String(kv[0])] = String(kv[1])
        }
        guard let credential = fields["Credential"], let signed = fields["SignedHeaders"], let signature = fields["Signature"] else {
            throw S3Error.invalidArgument("Authorization header lacks Credential, SignedHeaders or Signature")
        }
        guard let amzDate = r.headers["x-amz-date"] ?? r.headers["date"].flatMap(Self.amzDate(fromHTTPDate:)) else {
            throw S3Error.accessDenied("AWS authentication requires a valid Date or x-amz-date header")
        }
        guard let t = Self.epochSeconds(amzDate) else { throw S3Error.accessDenied("invalid x-amz-date \(amzDate)") }
        guard abs(nowMs / 1000 - t) <= Self.maxSkewSeconds else {
            throw S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
        }
        let payloadHash = r.headers["x-amz-content-sha256"] ?? "UNSIGNED-PAYLOAD"
        return try check(
            r, credential: credential, signedHeaders: signed, signature: signature,
            amzDate: amzDate, payloadHash: payloadHash, dropQuery: nil)
    }

    private func verifyPresigned(_ r: SignedRequest) throws(S3Error) -> Principal {
        func q(_ k: String) -> String? { r.query.first { $0.0 == k }?.1 }
        guard q("X-Amz-Algorithm") == "AWS4-HMAC-SHA256", let credential = q("X-Amz-Credential"),
            let amzDate = q("X-Amz-Date"), let expires = q("X-Amz-Expires").flatMap({ Int64($0) }),
            let signed = q("X-Amz-SignedHeaders"), let signature = q("X-Amz-Signature")
        else {
            throw S3Error.accessDenied(
                "Query-string authentication requires X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature")
        }
        guard (1...604_800).contains(expires) else {
            throw S3Error.accessDenied("X-Amz-Expires must be between 1 and 604800 seconds")
        }
        guard let t = Self.epochSeconds(amzDate) else { throw S3Error.accessDenied("invalid X-Amz-Date \(amzDate)") }
        let now = nowMs / 1000
        guard now <= t + expires else { throw S3Error.accessDenied("Request has expired") }
        guard t - now <= Self.maxSkewSeconds else { throw S3Error.accessDenied("Request is not valid yet") }
        return try check(
            r, credential: credential, signedHeaders: signed, signature: signature, amzDate: amzDate,
            payloadHash: r.headers["x-amz-content-sha256"] ?? "UNSIGNED-PAYLOAD", dropQuery: "X-Amz-Signature")
    }

    private func check(
        _ r: SignedRequest, credential: String, signedHeaders: String, signature: String,
        amzDate: String, payloadHash: String, dropQuery: String?
    ) throws(S3Error) -> Principal {
        let c = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard c.count == 5, c[4] == "aws4_request", c[3] == "s3" else {
            throw S3Error.accessDenied("malformed credential scope \(credential)")
        }
        let secrets = credentials.secrets(forAccessKey: c[0])
        guard !secrets.isEmpty else {
            throw S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        }
        guard c[1] == amzDate.prefix(8) else { throw S3Error.accessDenied("credential date does not match x-amz-date") }
        guard c[2] == region else {
            throw S3Error(400, "AuthorizationHeaderMalformed", "the region '\(c[2])' is wrong; expecting '\(region)'")
        }
        let names = signedHeaders.split(separator: ";").map(String.init)
        guard names.contains("host") else { throw S3Error.accessDenied("the host header must be signed") }
        for n in names where r.headers[n] == nil { throw S3Error.accessDenied("signed header \(n) is missing") }
        let scope = c[1...4].joined(separator: "/")
        let query = r.query.filter { $0.0 != dropQuery }
        for secret in secrets {
            let key = Self.signingKey(secret: secret, date: c[1], region: c[2])
            let expected = Self.signature(r, query: query, signedHeaders: names, payloadHash: payloadHash, amzDate: amzDate, scope: scope, key: key)
            if Sodium.constantTimeEqual(Array(expected.utf8), Array(signature.utf8)) {
                return Principal(accessKey: c[0], signingKey: key, amzDate: amzDate, scope: scope, seedSignature: signature)
            }
        }
        throw S3Error.signatureMismatch()
    }

    /// The hex signature of a request: its canonical form (method, URI-encoded path, sorted
    /// encoded query, the signed headers, payload hash) hashed into the string to sign, then
    /// HMAC'd with the day's signing key. Both the verifier and `SigV4Signer` use it.
    static func signature(
        _ r: SignedRequest, query: [(String, String)], signedHeaders names: [String], payloadHash: String, amzDate: String, scope: String, key: [UInt8]
    ) -> String {
        var canonicalHeaders = ""
        for n in names { canonicalHeaders += "\(n):\((r.headers[n] ?? "").collapsingSpaces)\n" }
        let encoded: [(String, String)] = query.map { (Self.uriEncode($0.0, slash: true), Self.uriEncode($0.1, slash: true)) }
        let sortedPairs = encoded.sorted { (a: (String, String), b: (String, String)) -> Bool in
            a.0 == b.0 ? a.1 < b.1 : a.0 < b.0
        }
        let query = sortedPairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let path = Self.uriEncode(Self.percentDecode(r.rawPath) ?? r.rawPath, slash: false)
        let canonical = [r.method, path, query, canonicalHeaders, names.joined(separator: ";"), payloadHash].joined(separator: "\n")
        let toSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Digest.sha256(Array(canonical.utf8)).hex)"
        return Digest.hmacSHA256(key: key, Array(toSign.utf8)).hex
    }

    static func signingKey(secret: String, date: String, region: String) -> [UInt8] {
        var k = Digest.hmacSHA256(key: Array("AWS4\(secret)".utf8), Array(date.utf8))
        for part in [region, "s3", "aws4_request"] { k = Digest.hmacSHA256(key: k, Array(part.utf8)) }
        return k
    }

    /// Percent-encodes everything but A-Z a-z 0-9 - . _ ~ (and '/' unless `slash`).
    static func uriEncode(_ s: String, slash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case 65...90, 97...122, 48...57, 45, 46, 95, 126: out.unicodeScalars.append(Unicode.Scalar(b))
            case 47 where !slash: out += "/"
            default: out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// Decodes %XX escapes (not '+'); nil on a malformed escape.
    static func percentDecode(_ s: some StringProtocol, plusIsSpace: Bool = false) -> String? {
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 37 {
                // Two hex digits exactly: UInt8(_:radix:) alone would also take "+5".
                let hex = it.prefix(2)
                guard hex.count == 2, hex.allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                    let v = UInt8(String(decoding: hex, as: UTF8.self), radix: 16)
                else { return nil }
                out.append(v); it = it.dropFirst(2)
            } else if b == 43 && plusIsSpace {
                out.append(32)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// "20130524T000000Z" → seconds since the epoch.
    static func epochSeconds(_ s: String) -> Int64? {
        let u = Array(s.utf8)
        guard u.count == 16, u[8] == UInt8(ascii: "T"), u[15] == UInt8(ascii: "Z") else { return nil }
        func num(_ r: Range<Int>, _ range: ClosedRange<Int64>) -> Int64? { HTTPDate.number(Substring(String(decoding: u[r], as: UTF8.self)), range) }
        guard let y = num(0..<4, 1...9999), let mo = num(4..<6, 1...12), let d = num(6..<8, 1...31), let h = num(9..<11, 0...23),
            let mi = num(11..<13, 0...59), let se = num(13..<15, 0...60)
        else { return nil }
        return HTTPDate.daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se
    }

    static func amzDate(fromHTTPDate s: String) -> String? {
        HTTPDate.parse(s).map { HTTPDate.amzDate(epochSeconds: $0) }
    }
}

/// Signs requests as an S3 client does (SigV4 in the Authorization header, payload unsigned):
/// what `stacks bench s3` sends to any S3 endpoint. Keeps the day's signing key.
public final class SigV4Signer: @unchecked Sendable {
    let accessKey: String
    let secret: String
    let region: String
    var day = ""
    var key: [UInt8] = []

    public init(accessKey: String, secret: String, region: String) { self.accessKey = accessKey; self.secret = secret; self.region = region }

    /// Signs a request of `method` on `path` (decoded, e.g. "/bucket/key") with `query`
    /// (decoded) to `host` at `epochSeconds`: the request target to send (path and query
    /// percent-encoded) and the headers to add (Host, x-amz-date, x-amz-content-sha256,
    /// Authorization). Used by one task at a time.
    public func sign(
        method: String, path: String, query: [(String, String)], host: String, epochSeconds: Int64
    ) -> (
        target: String, headers: [(String, String)]
    ) {
        let amzDate = HTTPDate.amzDate(epochSeconds: epochSeconds)
        let date = String(amzDate.prefix(8))
        if date != day { (day, key) = (date, SigV4.signingKey(secret: secret, date: date, region: region)) }
        let payload = "UNSIGNED-PAYLOAD"
        let headers = ["host": host, "x-amz-content-sha256": payload, "x-amz-date": amzDate]
        let names = headers.keys.sorted()
        let scope = "\(date)/\(region)/s3/aws4_request"
        let rawPath = SigV4.uriEncode(path, slash: false)
        let r = SignedRequest(method: method, rawPath: rawPath, query: query, headers: headers)
        let signature = SigV4.signature(r, query: query, signedHeaders: names, payloadHash: payload, amzDate: amzDate, scope: scope, key: key)
        let auth = "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
        let q = query.map { $0.1.isEmpty ? SigV4.uriEncode($0.0, slash: true) : "\(SigV4.uriEncode($0.0, slash: true))=\(SigV4.uriEncode($0.1, slash: true))" }
        return (
            q.isEmpty ? rawPath : rawPath + "?" + q.joined(separator: "&"),
            [("Host", host), ("x-amz-content-sha256", payload), ("x-amz-date", amzDate), ("Authorization", auth)]
        )
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
    /// Trims and collapses runs of spaces, as SigV4 canonical headers require.
    var collapsingSpaces: String {
        trimmingSpaces.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
}

extension String {
    func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
