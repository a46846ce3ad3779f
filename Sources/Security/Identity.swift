import Support

/// What a node may do in the cluster; a join token names the role its nodes get.
public enum NodeRole: String, Sendable, CaseIterable {
    case storage, compute, all
}

/// The cluster's signing key (Ed25519). Its public half identifies the cluster: a join token
/// carries its fingerprint, so a joining node pins the cluster without trusting the first answer.
public struct ClusterKey: Sendable, Equatable {
    public let publicKey: [UInt8]
    /// Only the nodes that sign credentials hold it.
    public let secretKey: [UInt8]?

    public init(publicKey: [UInt8], secretKey: [UInt8]? = nil) {
        self.publicKey = publicKey; self.secretKey = secretKey
    }

    public static func generate() -> ClusterKey {
        let (pk, sk) = Sodium.Sign.keyPair()
        return ClusterKey(publicKey: pk, secretKey: sk)
    }

    public static let fingerprintBytes = 16

    /// The first 16 bytes of BLAKE2b-256 of the public key.
    public static func fingerprint(of publicKey: [UInt8]) -> [UInt8] {
        Array(Sodium.hash(Array("stacks cluster key".utf8) + publicKey).prefix(fingerprintBytes))
    }

    public var fingerprint: [UInt8] { Self.fingerprint(of: publicKey) }

    /// Signs a node's credential; nil on a node that does not hold the secret key.
    public func issue(clusterID: String, node: String, publicKey nodeKey: [UInt8], role: NodeRole, issuedMs: Int64) -> NodeCredential? {
        guard let secretKey else { return nil }
        var c = NodeCredential(clusterID: clusterID, node: node, publicKey: nodeKey, role: role, issuedMs: issuedMs, signature: [])
        guard let sig = try? Sodium.Sign.sign(c.signedBytes, secretKey: secretKey) else { return nil }
        c.signature = sig
        return c
    }
}

/// A node's own key pair (Ed25519), made by the node itself; the secret never leaves its data dir.
public struct NodeKey: Sendable, Equatable {
    public let publicKey: [UInt8]
    public let secretKey: [UInt8]

    public static func generate() -> NodeKey {
        let (pk, sk) = Sodium.Sign.keyPair()
        return NodeKey(publicKey: pk, secretKey: sk)
    }

    public init(publicKey: [UInt8], secretKey: [UInt8]) {
        self.publicKey = publicKey; self.secretKey = secretKey
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        // Cannot fail: the key's length was checked where it was made or read.
        (try? Sodium.Sign.sign(message, secretKey: secretKey)) ?? []
    }
}

/// A node's credential: its public key and name, bound to one cluster and signed by the cluster key.
public struct NodeCredential: Sendable, Equatable {
    public var clusterID: String
    public var node: String
    public var publicKey: [UInt8]
    public var role: NodeRole
    public var issuedMs: Int64
    public var signature: [UInt8]

    public init(clusterID: String, node: String, publicKey: [UInt8], role: NodeRole, issuedMs: Int64, signature: [UInt8]) {
        self.clusterID = clusterID; self.node = node; self.publicKey = publicKey
        self.role = role; self.issuedMs = issuedMs; self.signature = signature
    }

    static let version: UInt8 = 1

    /// What the cluster key signs: a domain tag, then every field but the signature.
    var signedBytes: [UInt8] {
        var w = BinaryWriter()
        w.string("stacks node credential")
        w.u8(Self.version)
        w.string(clusterID); w.string(node); w.blob(publicKey); w.string(role.rawValue); w.i64(issuedMs)
        return w.bytes
    }

    /// True when `clusterKey` signed exactly this credential.
    public func verify(clusterKey: [UInt8]) -> Bool {
        publicKey.count == Sodium.Sign.publicKeyBytes && Sodium.Sign.verify(signature, of: signedBytes, publicKey: clusterKey)
    }

    public var encoded: [UInt8] {
        var w = BinaryWriter()
        w.u8(Self.version)
        w.string(clusterID); w.string(node); w.blob(publicKey); w.string(role.rawValue); w.i64(issuedMs); w.blob(signature)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        try self.init(reading: &r)
        try r.expectEnd()
    }

    public init(reading r: inout BinaryReader) throws(DecodeError) {
        guard try r.u8() == Self.version else { throw DecodeError("unknown credential version") }
        clusterID = try r.string(max: 256)
        node = try r.string(max: 256)
        publicKey = try r.blob(max: 64)
        guard let role = NodeRole(rawValue: try r.string(max: 16)) else { throw DecodeError("unknown node role") }
        self.role = role
        issuedMs = try r.i64()
        signature = try r.blob(max: 128)
    }
}

/// A join token: `STKS1-<cluster fingerprint>-<id>-<secret>`, all hex. The cluster keeps only
/// `secretHash`; the id names the token in `stacks token list` and `revoke`.
public struct JoinToken: Sendable, Equatable {
    public static let prefix = "STKS1"
    public static let idBytes = 8
    public static let secretBytes = 16

    public var fingerprint: [UInt8]
    public var id: [UInt8]
    public var secret: [UInt8]

    public init(fingerprint: [UInt8], id: [UInt8], secret: [UInt8]) {
        self.fingerprint = fingerprint; self.id = id; self.secret = secret
    }

    public static func generate(fingerprint: [UInt8]) -> JoinToken {
        JoinToken(fingerprint: fingerprint, id: Sodium.randomBytes(idBytes), secret: Sodium.randomBytes(secretBytes))
    }

    public var text: String { [Self.prefix, fingerprint.hex, id.hex, secret.hex].joined(separator: "-") }
    public var idText: String { id.hex }

    /// nil unless `text` is a token of this format (surrounding whitespace allowed).
    public init?(text: String) {
        let parts = text.trimmingCharacters.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == Self.prefix,
            let fp = bytes(fromHex: parts[1]), fp.count == ClusterKey.fingerprintBytes,
            let id = bytes(fromHex: parts[2]), id.count == Self.idBytes,
            let secret = bytes(fromHex: parts[3]), secret.count == Self.secretBytes
        else { return nil }
        self.init(fingerprint: fp, id: id, secret: secret)
    }

    /// What the cluster stores and compares: a keyed BLAKE2b of the secret.
    public static func hash(secret: [UInt8]) -> [UInt8] { Sodium.hash(secret, key: Array("stacks join token secret".utf8)) }
    public var secretHash: [UInt8] { Self.hash(secret: secret) }
}

extension String {
    fileprivate var trimmingCharacters: Substring {
        let s = drop { $0.isWhitespace }
        var end = s.endIndex
        while end > s.startIndex, s[s.index(before: end)].isWhitespace { end = s.index(before: end) }
        return s[..<end]
    }
}
