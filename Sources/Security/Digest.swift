import COpenSSL
import Foundation

/// The one door to OpenSSL's libcrypto: MD5 (S3 ETags), SHA-256 and HMAC-SHA-256 (SigV4).
/// OpenSSL is used for these because its SHA-256 uses SHA-NI and it costs no build time.
public final class Digest {
    public enum Algorithm: Sendable { case md5, sha256 }

    private let context: OpaquePointer
    public let algorithm: Algorithm

    /// A fresh streaming digest.
    public init(_ algorithm: Algorithm) {
        self.algorithm = algorithm
        guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new: out of memory") }
        context = ctx
        let md = algorithm == .md5 ? EVP_md5() : EVP_sha256()
        precondition(EVP_DigestInit_ex(context, md, nil) == 1, "EVP_DigestInit_ex failed for \(algorithm)")
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, base, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    public func update<C: ContiguousBytes>(_ bytes: C) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything fed so far; the object must not be updated afterwards.
    public func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &out, &len) == 1, "EVP_DigestFinal_ex failed")
        return Array(out.prefix(Int(len)))
    }

    public static func md5<C: ContiguousBytes>(_ bytes: C) -> [UInt8] {
        let d = Digest(.md5); d.update(bytes); return d.finish()
    }

    public static func sha256<C: ContiguousBytes>(_ bytes: C) -> [UInt8] {
        let d = Digest(.sha256); d.update(bytes); return d.finish()
    }

    public static func hmacSHA256<K: ContiguousBytes, M: ContiguousBytes>(key: K, _ message: M) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(
                    EVP_sha256(), k.baseAddress, Int32(k.count),
                    m.bindMemory(to: UInt8.self).baseAddress, m.count, &out, &len)
            }
        }
        precondition(len == 32, "HMAC-SHA-256 failed")
        return out
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal, as S3 ETags and SigV4 want it.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](); out.reserveCapacity(underestimatedCount * 2)
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Decodes hexadecimal; nil for odd length or a non-hex digit.
public func bytes(fromHex s: some StringProtocol) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    func v(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
    var out = [UInt8](); out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = v(u[i]), let lo = v(u[i + 1]) else { return nil }
        out.append(hi << 4 | lo); i += 2
    }
    return out
}
