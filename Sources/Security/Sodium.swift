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

    /// Ed25519 signatures (detached): node identities and the cluster key.
    public enum Sign {
        public static let publicKeyBytes = Int(crypto_sign_PUBLICKEYBYTES)
        public static let secretKeyBytes = Int(crypto_sign_SECRETKEYBYTES)
        public static let signatureBytes = Int(crypto_sign_BYTES)

        public static func keyPair() -> (publicKey: [UInt8], secretKey: [UInt8]) {
            _ = ready
            var pk = [UInt8](repeating: 0, count: publicKeyBytes), sk = [UInt8](repeating: 0, count: secretKeyBytes)
            _ = crypto_sign_keypair(&pk, &sk)
            return (pk, sk)
        }

        /// The public half of a secret key (libsodium's secret key carries it).
        public static func publicKey(of secretKey: [UInt8]) -> [UInt8]? {
            guard secretKey.count == secretKeyBytes else { return nil }
            var pk = [UInt8](repeating: 0, count: publicKeyBytes)
            guard crypto_sign_ed25519_sk_to_pk(&pk, secretKey) == 0 else { return nil }
            return pk
        }

        public static func sign(_ message: [UInt8], secretKey: [UInt8]) throws(SecurityError) -> [UInt8] {
            try ensureReady()
            guard secretKey.count == secretKeyBytes else { throw .badKeyLength(expected: secretKeyBytes, got: secretKey.count) }
            var sig = [UInt8](repeating: 0, count: signatureBytes)
            guard crypto_sign_detached(&sig, nil, message, UInt64(message.count), secretKey) == 0 else { throw .sealFailed }
            return sig
        }

        public static func verify(_ signature: [UInt8], of message: [UInt8], publicKey: [UInt8]) -> Bool {
            guard ready, signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
            return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
        }
    }

    /// BLAKE2b with a 32-byte output, optionally keyed (16 to 64 key bytes).
    public static func hash(_ message: [UInt8], key: [UInt8] = []) -> [UInt8] {
        _ = ready
        var out = [UInt8](repeating: 0, count: 32)
        let k = key.count >= Int(crypto_generichash_KEYBYTES_MIN) ? key : []
        _ = crypto_generichash(&out, 32, message, UInt64(message.count), k.isEmpty ? nil : k, k.count)
        return out
    }

    /// X25519 key exchange (libsodium's `crypto_kx`): two session keys, one each way.
    public enum KeyExchange {
        public static let publicKeyBytes = Int(crypto_kx_PUBLICKEYBYTES)

        public static func keyPair() -> (publicKey: [UInt8], secretKey: [UInt8]) {
            _ = ready
            var pk = [UInt8](repeating: 0, count: publicKeyBytes), sk = [UInt8](repeating: 0, count: Int(crypto_kx_SECRETKEYBYTES))
            _ = crypto_kx_keypair(&pk, &sk)
            return (pk, sk)
        }

        /// The connecting side's keys: `receive` opens what the acceptor sends, `send` seals for it.
        public static func clientKeys(
            publicKey: [UInt8], secretKey: [UInt8], serverPublicKey: [UInt8]
        ) throws(SecurityError) -> (receive: [UInt8], send: [UInt8]) {
            try ensureReady()
            guard serverPublicKey.count == publicKeyBytes else { throw .badKeyLength(expected: publicKeyBytes, got: serverPublicKey.count) }
            var rx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES)), tx = rx
            guard crypto_kx_client_session_keys(&rx, &tx, publicKey, secretKey, serverPublicKey) == 0 else { throw .authenticationFailed }
            return (rx, tx)
        }

        public static func serverKeys(
            publicKey: [UInt8], secretKey: [UInt8], clientPublicKey: [UInt8]
        ) throws(SecurityError) -> (receive: [UInt8], send: [UInt8]) {
            try ensureReady()
            guard clientPublicKey.count == publicKeyBytes else { throw .badKeyLength(expected: publicKeyBytes, got: clientPublicKey.count) }
            var rx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES)), tx = rx
            guard crypto_kx_server_session_keys(&rx, &tx, publicKey, secretKey, clientPublicKey) == 0 else { throw .authenticationFailed }
            return (rx, tx)
        }
    }

    /// AEAD under a session key with a counter nonce: a key is used by one sender only, and each
    /// message number once, so a replayed or reordered message fails. AES-256-GCM where the CPU
    /// has AES-NI and CLMUL (libsodium's condition), else ChaCha20-Poly1305 (IETF).
    public enum CounterAEAD {
        public enum Cipher: UInt8, Sendable {
            case chacha20poly1305 = 0
            case aes256gcm = 1
        }
        public static let tagBytes = 16
        /// The fastest cipher this machine runs.
        public static let best: Cipher = ready && crypto_aead_aes256gcm_is_available() == 1 ? .aes256gcm : .chacha20poly1305

        static func nonce(_ n: UInt64) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 12)
            for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
            return out
        }

        public static func seal(_ plaintext: [UInt8], key: [UInt8], counter: UInt64, cipher: Cipher = .chacha20poly1305) throws(SecurityError) -> [UInt8] {
            try ensureReady()
            guard key.count == 32 else { throw .badKeyLength(expected: 32, got: key.count) }
            var cipherText = [UInt8](repeating: 0, count: plaintext.count + tagBytes)
            var len: UInt64 = 0
            let n = nonce(counter)
            let rc =
                switch cipher {
                case .chacha20poly1305: crypto_aead_chacha20poly1305_ietf_encrypt(&cipherText, &len, plaintext, UInt64(plaintext.count), nil, 0, nil, n, key)
                case .aes256gcm:
                    best == .aes256gcm ? crypto_aead_aes256gcm_encrypt(&cipherText, &len, plaintext, UInt64(plaintext.count), nil, 0, nil, n, key) : -1
                }
            guard rc == 0 else { throw .sealFailed }
            return cipherText
        }

        public static func open(_ sealed: [UInt8], key: [UInt8], counter: UInt64, cipher: Cipher = .chacha20poly1305) throws(SecurityError) -> [UInt8] {
            try ensureReady()
            guard key.count == 32 else { throw .badKeyLength(expected: 32, got: key.count) }
            guard sealed.count >= tagBytes else { throw .authenticationFailed }
            var plain = [UInt8](repeating: 0, count: max(sealed.count - tagBytes, 1))
            var len: UInt64 = 0
            let n = nonce(counter)
            let rc =
                switch cipher {
                case .chacha20poly1305: crypto_aead_chacha20poly1305_ietf_decrypt(&plain, &len, nil, sealed, UInt64(sealed.count), nil, 0, n, key)
                case .aes256gcm: best == .aes256gcm ? crypto_aead_aes256gcm_decrypt(&plain, &len, nil, sealed, UInt64(sealed.count), nil, 0, n, key) : -1
                }
            guard rc == 0 else { throw .authenticationFailed }
            return Array(plain.prefix(Int(len)))
        }
    }

    /// Constant-time comparison, so signature checks leak no timing.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return sodium_memcmp(a, b, a.count) == 0
    }
}
