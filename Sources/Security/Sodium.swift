import CSodium

/// The one door to libsodium: authenticated encryption, random bytes and Ed25519.
/// No pointer or C status code leaves this file.
public enum Sodium {
    /// Initializes libsodium once per process; `sodium_init` is idempotent and thread-safe.
    static let ready: Bool = sodium_init() >= 0

    static func ensureReady() throws(SecurityError) {
        guard ready else { throw .libraryUnavailable("sodium_init failed") }
    }

    /// Cryptographically secure random bytes from the OS (getrandom).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        _ = ready
        var out = [UInt8](repeating: 0, count: max(count, 1))
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return Array(out.prefix(count))
    }

    /// XChaCha20-Poly1305 (IETF): a 32-byte key, a random 24-byte nonce per message.
    public enum AEAD {
        public static let keyBytes = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
        public static let nonceBytes = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
        public static let tagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

        /// Returns `nonce || ciphertext || tag`.
        public static func seal(_ plaintext: [UInt8], key: [UInt8], associatedData: [UInt8] = []) throws(SecurityError) -> [UInt8] {
            try ensureReady()
            guard key.count == keyBytes else { throw .badKeyLength(expected: keyBytes, got: key.count) }
            let nonce = randomBytes(nonceBytes)
            var cipher = [UInt8](repeating: 0, count: plaintext.count + tagBytes)
            var cipherLen: UInt64 = 0
            let rc = cipher.withUnsafeMutableBufferPointer { c in
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    c.baseAddress!, &cipherLen, plaintext, UInt64(plaintext.count),
                    associatedData, UInt64(associatedData.count), nil, nonce, key)
            }
            guard rc == 0 else { throw .sealFailed }
            return nonce + cipher.prefix(Int(cipherLen))
        }

        /// Opens `nonce || ciphertext || tag`; a forged or damaged message throws `.authenticationFailed`.
        public static func open(_ sealed: [UInt8], key: [UInt8], associatedData: [UInt8] = []) throws(SecurityError) -> [UInt8] {
            try ensureReady()
            guard key.count == keyBytes else { throw .badKeyLength(expected: keyBytes, got: key.count) }
            guard sealed.count >= nonceBytes + tagBytes else { throw .authenticationFailed }
            let nonce = Array(sealed.prefix(nonceBytes))
            let cipher = Array(sealed.dropFirst(nonceBytes))
            var plain = [UInt8](repeating: 0, count: max(cipher.count - tagBytes, 1))  // never empty: libsodium wants a buffer
            var plainLen: UInt64 = 0
            let rc = plain.withUnsafeMutableBufferPointer { p in
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    p.baseAddress!, &plainLen, nil, cipher, UInt64(cipher.count),
                    associatedData, UInt64(associatedData.count), nonce, key)
            }
            guard rc == 0 else { throw .authenticationFailed }
            return Array(plain.prefix(Int(plainLen)))
        }
    }

    /// Constant-time comparison, so signature checks leak no timing.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return sodium_memcmp(a, b, a.count) == 0
    }
}
