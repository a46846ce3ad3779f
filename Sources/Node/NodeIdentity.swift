import Files
import Security

/// A node's identity in `DATA_DIR/identity/` (directory 0700, files 0600, one base64 line each):
/// `cluster.pub` the cluster's public key, `cluster.key` its signing key (only on the nodes that
/// sign credentials: the founder and nodes of role all), `node.key` this node's own secret key,
/// `node.cred` its credential, `secrets.key` the key S3 users' secrets are sealed under, and
/// `members` (a joined node) the members its grant named. A node that joined before join tokens
/// has none of them.
public struct NodeIdentity: Sendable {
    public var clusterKey: ClusterKey?
    public var nodeKey: NodeKey?
    public var credential: NodeCredential?
    /// `secrets.key`: what S3 users' secrets are sealed under in the cluster state (every member has it).
    public var secretsKey: [UInt8]?
    /// `members`: the members the join grant named (`name base64key` lines), admitted while this
    /// node's replica holds no node record yet.
    public var grantedMembers: [String: [UInt8]] = [:]
    let dir: String

    public init(dataDir: String) throws {
        dir = "\(dataDir)/identity"
        func line(_ name: String) throws -> [UInt8]? {
            let path = "\(dir)/\(name)"
            guard Files.exists(path) else { return nil }
            guard let b = Base64.decode(String(decoding: try Files.read(path, limit: 1 << 16), as: UTF8.self).trimmingWhitespace) else {
                throw ConfigError(file: path, key: nil, line: nil, problem: "is not one line of base64")
            }
            return b
        }
        if let sk = try line("cluster.key") {
            guard let pk = Sodium.Sign.publicKey(of: sk) else {
                throw ConfigError(file: "\(dir)/cluster.key", key: nil, line: nil, problem: "is not an Ed25519 secret key")
            }
            clusterKey = ClusterKey(publicKey: pk, secretKey: sk)
        } else if let pk = try line("cluster.pub") {
            guard pk.count == Sodium.Sign.publicKeyBytes else {
                throw ConfigError(file: "\(dir)/cluster.pub", key: nil, line: nil, problem: "is not an Ed25519 public key")
            }
            clusterKey = ClusterKey(publicKey: pk)
        }
        if let sk = try line("node.key") {
            guard let pk = Sodium.Sign.publicKey(of: sk) else {
                throw ConfigError(file: "\(dir)/node.key", key: nil, line: nil, problem: "is not an Ed25519 secret key")
            }
            nodeKey = NodeKey(publicKey: pk, secretKey: sk)
        }
        if let k = try line("secrets.key") {
            guard k.count == Sodium.AEAD.keyBytes else { throw ConfigError(file: "\(dir)/secrets.key", key: nil, line: nil, problem: "is not a 32-byte key") }
            secretsKey = k
        }
        if let b = try? Files.read("\(dir)/members", limit: 1 << 20) {
            for l in String(decoding: b, as: UTF8.self).split(separator: "\n") {
                let f = l.split(separator: " ")
                if f.count == 2, let k = Base64.decode(String(f[1])) { grantedMembers[String(f[0])] = k }
            }
        }
        if let c = try line("node.cred") {
            do { credential = try NodeCredential(decoding: c) } catch {
                throw ConfigError(file: "\(dir)/node.cred", key: nil, line: nil, problem: "is not a node credential: \(error)")
            }
        }
    }

    /// Whether this node can sign credentials (and so admit joining nodes).
    public var signs: Bool { clusterKey?.secretKey != nil }

    /// Whether it came in with a join grant (which names the members), rather than founding.
    public var joined: Bool { !grantedMembers.isEmpty }

    /// What it shows a joiner: nil until it has a credential that its cluster key verifies.
    public var proof: JoinDoorman.Proof? {
        guard let clusterKey, let nodeKey, let credential, credential.verify(clusterKey: clusterKey.publicKey), credential.publicKey == nodeKey.publicKey
        else { return nil }
        return JoinDoorman.Proof(clusterKey: clusterKey.publicKey, credential: credential, nodeKey: nodeKey)
    }

    public mutating func save(clusterKey k: ClusterKey) throws {
        try Files.makeDirectory(dir)
        if let sk = k.secretKey { try write("cluster.key", sk) }
        try write("cluster.pub", k.publicKey)
        clusterKey = k
    }

    public mutating func save(secretsKey k: [UInt8]) throws {
        try Files.makeDirectory(dir)
        try write("secrets.key", k)
        secretsKey = k
    }

    public mutating func save(members: [GrantedMember]) throws {
        try Files.makeDirectory(dir)
        let text = members.map { "\($0.name) \(Base64.encode($0.publicKey))\n" }.joined()
        try Files.writeAtomically(Array(text.utf8), to: "\(dir)/members", mode: 0o600)
        grantedMembers = Dictionary(members.map { ($0.name, $0.publicKey) }, uniquingKeysWith: { a, _ in a })
    }

    public mutating func save(nodeKey k: NodeKey) throws {
        try Files.makeDirectory(dir)
        try write("node.key", k.secretKey)
        nodeKey = k
    }

    public mutating func save(credential c: NodeCredential) throws {
        try Files.makeDirectory(dir)
        try write("node.cred", c.encoded)
        credential = c
    }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        try Files.writeAtomically(Array((Base64.encode(bytes) + "\n").utf8), to: "\(dir)/\(name)", mode: 0o600)
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
