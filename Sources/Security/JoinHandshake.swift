import Support

/// The join handshake, both ends as pure steps over bytes (the shells move the messages).
///
/// 1. joiner → member `hello`: version · the joiner's ephemeral X25519 key.
/// 2. member → joiner `proof`: its ephemeral key · 0 · sealed(cluster public key, the member's
///    credential, the member's signature over the transcript); or · 1 · a plain reason when it
///    cannot prove anything (a node with no credential).
/// 3. joiner → member `request`, sealed: the token id, a proof that it holds the token's secret
///    (a BLAKE2b keyed with the secret's hash, over the transcript, its name and key: the secret
///    itself never leaves the joiner), the new node's name and public key, and that key's
///    signature over the transcript (it holds the secret half).
/// 4. member → joiner `answer`, sealed: accepted (credential, cluster id, keyring, seeds),
///    refused (a reason) or redirect (members that can sign credentials).
///
/// Session keys come from the two ephemeral keys (`crypto_kx`), messages are numbered per
/// direction, and the transcript binds both ephemeral keys, so nothing recorded from one
/// handshake opens or verifies in another. The joiner checks the cluster key against the
/// token's fingerprint, the credential against the cluster key and the signature against the
/// credential before it answers. No seed ever sees the secret: one holding the cluster's signing
/// key without being a member (a removed node) learns a proof bound to its own handshake, which
/// opens nothing elsewhere, and the member checks the proof against the hash the cluster keeps.
public enum JoinHandshake {
    public static let version: UInt8 = 2
    /// Sent where a data connection's peer sends its 16-byte challenge, so a member's data
    /// port tells a joiner from a peer at its first bytes.
    public static let magic: [UInt8] = Array("STKS-JOIN-v1".utf8) + [0, 0, 0, 0]
    /// Every message of the handshake is at most this long.
    public static let maxMessageBytes = 64 << 10

    /// What a joiner sends, unsealed, in place of its request when the member proved another
    /// cluster's key than its token's: the member counts it (it learns nothing else).
    public static let otherCluster = Array("STKS-JOIN-OTHER-CLUSTER".utf8)

    static func transcript(hello: [UInt8], memberEphemeral: [UInt8], clusterKey: [UInt8], credential: [UInt8]) -> [UInt8] {
        var w = BinaryWriter()
        w.string("stacks join transcript")
        w.blob(hello); w.blob(memberEphemeral); w.blob(clusterKey); w.blob(credential)
        return Sodium.hash(w.bytes)
    }

    static func requestTranscript(_ t: [UInt8]) -> [UInt8] { Sodium.hash(Array("stacks join request".utf8) + t) }

    /// A token proof's length (BLAKE2b's default output).
    public static let proofBytes = 32

    /// What proves the token's secret: keyed with its hash (what the cluster keeps), bound to
    /// this handshake and to the node it asks for.
    static func tokenProof(secretHash: [UInt8], transcript t: [UInt8], name: String, publicKey: [UInt8]) -> [UInt8] {
        var w = BinaryWriter()
        w.string("stacks join token proof"); w.blob(t); w.string(name); w.blob(publicKey)
        return Sodium.hash(w.bytes, key: secretHash)
    }
}

public struct HandshakeError: Error, Equatable, CustomStringConvertible {
    public var description: String
    /// The peer proved the key of another cluster than the one asked for.
    public var otherCluster = false
    public init(_ description: String, otherCluster: Bool = false) { self.description = description; self.otherCluster = otherCluster }
}

/// What a joiner asks for once it trusts the member.
public struct JoinRequest: Sendable, Equatable {
    public var tokenID: [UInt8]
    /// `JoinHandshake.tokenProof`: the secret itself never travels.
    public var proof: [UInt8]
    public var name: String
    public var publicKey: [UInt8]
    public var signature: [UInt8]

    var encoded: [UInt8] {
        var w = BinaryWriter()
        w.blob(tokenID); w.blob(proof); w.string(name); w.blob(publicKey); w.blob(signature)
        return w.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        tokenID = try r.blob(max: 64); proof = try r.blob(max: 64); name = try r.string(max: 256)
        publicKey = try r.blob(max: 64); signature = try r.blob(max: 128)
        try r.expectEnd()
    }

    init(tokenID: [UInt8], proof: [UInt8], name: String, publicKey: [UInt8], signature: [UInt8]) {
        self.tokenID = tokenID; self.proof = proof; self.name = name; self.publicKey = publicKey; self.signature = signature
    }
}

/// What an enrolled node receives.
public struct JoinGrant: Sendable, Equatable {
    public var clusterID: String
    public var clusterKey: [UInt8]
    public var credential: NodeCredential
    /// The gossip keyring, primary first.
    public var keyring: [[UInt8]]
    /// Gossip addresses of members.
    public var seeds: [String]
    /// What S3 users' secrets are sealed under in the cluster state.
    public var secretsKey: [UInt8]
    /// The cluster's signing key, for a node of role `all` (so any such member admits joiners);
    /// empty for the others.
    public var signingKey: [UInt8]
    /// The cluster's members and their keys when it was granted: a replica that has applied no
    /// node record yet admits exactly these (the leader among them).
    public var members: [GrantedMember]

    public init(
        clusterID: String, clusterKey: [UInt8], credential: NodeCredential, keyring: [[UInt8]], seeds: [String], secretsKey: [UInt8] = [],
        signingKey: [UInt8] = [], members: [GrantedMember] = []
    ) {
        self.clusterID = clusterID; self.clusterKey = clusterKey; self.credential = credential; self.keyring = keyring; self.seeds = seeds
        self.secretsKey = secretsKey; self.signingKey = signingKey; self.members = members
    }
}

/// A member as a join grant names it.
public struct GrantedMember: Sendable, Equatable {
    public var name: String
    public var publicKey: [UInt8]
    public init(name: String, publicKey: [UInt8]) { self.name = name; self.publicKey = publicKey }
    /// At most this many in a grant (a join answer stays within its 64 KiB).
    public static let maxCount = 512
}

public enum JoinAnswer: Sendable, Equatable {
    case accepted(JoinGrant)
    case refused(String)
    /// Data addresses of members that can sign credentials.
    case redirect([String])

    var encoded: [UInt8] {
        var w = BinaryWriter()
        switch self {
        case .accepted(let g):
            w.u8(1); w.string(g.clusterID); w.blob(g.clusterKey); w.blob(g.credential.encoded)
            w.u32(UInt32(g.keyring.count)); for k in g.keyring { w.blob(k) }
            w.u32(UInt32(g.seeds.count)); for s in g.seeds { w.string(s) }
            w.blob(g.secretsKey)
            w.blob(g.signingKey)
            w.u32(UInt32(g.members.count)); for m in g.members { w.string(m.name); w.blob(m.publicKey) }
        case .refused(let why): w.u8(2); w.string(why)
        case .redirect(let to): w.u8(3); w.u32(UInt32(to.count)); for a in to { w.string(a) }
        }
        return w.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        switch try r.u8() {
        case 1:
            let id = try r.string(max: 256), ck = try r.blob(max: 64), cred = try NodeCredential(decoding: try r.blob(max: 4096))
            let nk = try r.count(max: 16)
            var keys: [[UInt8]] = []
            for _ in 0..<nk { keys.append(try r.blob(max: 64)) }
            let ns = try r.count(max: 256)
            var seeds: [String] = []
            for _ in 0..<ns { seeds.append(try r.string(max: 300)) }
            let secrets = try r.blob(max: 64), signing = try r.blob(max: 64)
            let nm = try r.count(max: GrantedMember.maxCount)
            var members: [GrantedMember] = []
            for _ in 0..<nm { members.append(GrantedMember(name: try r.string(max: 256), publicKey: try r.blob(max: 64))) }
            self = .accepted(
                JoinGrant(
                    clusterID: id, clusterKey: ck, credential: cred, keyring: keys, seeds: seeds, secretsKey: secrets, signingKey: signing, members: members))
        case 2: self = .refused(try r.string(max: 1024))
        case 3:
            let n = try r.count(max: 64)
            var to: [String] = []
            for _ in 0..<n { to.append(try r.string(max: 300)) }
            self = .redirect(to)
        default: throw DecodeError("unknown join answer")
        }
        try r.expectEnd()
    }
}

/// The joining side.
public struct Joiner: Sendable {
    public let token: JoinToken
    public let name: String
    public let nodeKey: NodeKey
    let ephemeral: (publicKey: [UInt8], secretKey: [UInt8])
    var keys: (receive: [UInt8], send: [UInt8])?
    var clusterKey: [UInt8] = []

    /// `ephemeral`: a fresh `Sodium.KeyExchange.keyPair()` per attempt (injected for tests).
    public init(token: JoinToken, name: String, nodeKey: NodeKey, ephemeral: (publicKey: [UInt8], secretKey: [UInt8])) {
        self.token = token; self.name = name; self.nodeKey = nodeKey; self.ephemeral = ephemeral
    }

    public var hello: [UInt8] { [JoinHandshake.version] + ephemeral.publicKey }

    /// Checks the member's proof and returns the sealed request; throws, sending nothing, when
    /// the member does not prove a credential of the token's cluster.
    public mutating func request(answering proof: [UInt8]) throws(HandshakeError) -> [UInt8] {
        var r = BinaryReader(proof)
        guard let eph = try? r.bytes(Sodium.KeyExchange.publicKeyBytes), let status = try? r.u8() else {
            throw HandshakeError("the seed's answer is not a Stacks join proof")
        }
        if status == 1 {
            let why = (try? r.string(max: 1024)) ?? "no reason given"
            throw HandshakeError("the seed cannot prove the cluster key: \(why)")
        }
        guard status == 0, let k = try? Sodium.KeyExchange.clientKeys(publicKey: ephemeral.publicKey, secretKey: ephemeral.secretKey, serverPublicKey: eph),
            let sealed = try? r.blob(max: JoinHandshake.maxMessageBytes), (try? r.expectEnd()) != nil
        else { throw HandshakeError("the seed's answer is not a Stacks join proof") }
        guard let plain = try? Sodium.CounterAEAD.open(sealed, key: k.receive, counter: 0) else {
            throw HandshakeError("the seed's proof does not open")
        }
        var p = BinaryReader(plain)
        guard let ck = try? p.blob(max: 64), let credBytes = try? p.blob(max: 4096), let sig = try? p.blob(max: 128),
            (try? p.expectEnd()) != nil, let cred = try? NodeCredential(decoding: credBytes)
        else { throw HandshakeError("the seed's proof is malformed") }
        guard Sodium.constantTimeEqual(ClusterKey.fingerprint(of: ck), token.fingerprint) else {
            throw HandshakeError(
                "the seed does not hold the cluster key this token is for (fingerprint mismatch): refusing to go on", otherCluster: true)
        }
        let t = JoinHandshake.transcript(hello: hello, memberEphemeral: eph, clusterKey: ck, credential: credBytes)
        guard cred.verify(clusterKey: ck), Sodium.Sign.verify(sig, of: t, publicKey: cred.publicKey) else {
            throw HandshakeError("the seed's credential or signature is not the cluster's: refusing to go on")
        }
        keys = k
        clusterKey = ck
        let req = JoinRequest(
            tokenID: token.id, proof: JoinHandshake.tokenProof(secretHash: token.secretHash, transcript: t, name: name, publicKey: nodeKey.publicKey),
            name: name, publicKey: nodeKey.publicKey,
            signature: nodeKey.sign(JoinHandshake.requestTranscript(t)))
        guard let out = try? Sodium.CounterAEAD.seal(req.encoded, key: k.send, counter: 0) else { throw HandshakeError("cannot seal the request") }
        return out
    }

    /// The member's answer; a grant is checked against the pinned cluster key and this node's key.
    public func answer(_ sealed: [UInt8]) throws(HandshakeError) -> JoinAnswer {
        guard let k = keys, let plain = try? Sodium.CounterAEAD.open(sealed, key: k.receive, counter: 1),
            let a = try? JoinAnswer(decoding: plain)
        else { throw HandshakeError("the seed's answer does not open") }
        if case .accepted(let g) = a {
            guard g.clusterKey == clusterKey, g.credential.verify(clusterKey: clusterKey), g.credential.publicKey == nodeKey.publicKey,
                g.credential.node == name, g.credential.clusterID == g.clusterID, !g.keyring.isEmpty
            else { throw HandshakeError("the credential the seed sent is not valid for this node") }
        }
        return a
    }
}

/// The member's side: proves its credential, then reads the request.
public struct JoinDoorman: Sendable {
    public struct Proof: Sendable {
        public var clusterKey: [UInt8]
        public var credential: NodeCredential
        public var nodeKey: NodeKey
        public init(clusterKey: [UInt8], credential: NodeCredential, nodeKey: NodeKey) {
            self.clusterKey = clusterKey; self.credential = credential; self.nodeKey = nodeKey
        }
    }
    let proof: Proof?
    let ephemeral: (publicKey: [UInt8], secretKey: [UInt8])
    var keys: (receive: [UInt8], send: [UInt8])?
    var transcript: [UInt8] = []

    /// `proof`: nil on a node with no credential (it says so and stops).
    public init(proof: Proof?, ephemeral: (publicKey: [UInt8], secretKey: [UInt8])) {
        self.proof = proof; self.ephemeral = ephemeral
    }

    /// The answer to a hello; throws for anything that is not one.
    public mutating func proof(answering hello: [UInt8]) throws(HandshakeError) -> [UInt8] {
        guard hello.count == 1 + Sodium.KeyExchange.publicKeyBytes, hello[0] == JoinHandshake.version else {
            throw HandshakeError("not a join hello of version \(JoinHandshake.version)")
        }
        var w = BinaryWriter()
        for b in ephemeral.publicKey { w.u8(b) }
        guard let proof else {
            w.u8(1); w.string("this member has no node credential (it joined before join tokens)")
            return w.bytes
        }
        guard
            let k = try? Sodium.KeyExchange.serverKeys(
                publicKey: ephemeral.publicKey, secretKey: ephemeral.secretKey, clientPublicKey: Array(hello.dropFirst()))
        else { throw HandshakeError("a hello with an invalid key") }
        let credBytes = proof.credential.encoded
        transcript = JoinHandshake.transcript(hello: hello, memberEphemeral: ephemeral.publicKey, clusterKey: proof.clusterKey, credential: credBytes)
        var p = BinaryWriter()
        p.blob(proof.clusterKey); p.blob(credBytes); p.blob(proof.nodeKey.sign(transcript))
        guard let sealed = try? Sodium.CounterAEAD.seal(p.bytes, key: k.send, counter: 0) else { throw HandshakeError("cannot seal the proof") }
        keys = k
        w.u8(0); w.blob(sealed)
        return w.bytes
    }

    /// The joiner's request, with its key's signature checked.
    public func request(_ sealed: [UInt8]) throws(HandshakeError) -> JoinRequest {
        guard let k = keys, let plain = try? Sodium.CounterAEAD.open(sealed, key: k.receive, counter: 0),
            let req = try? JoinRequest(decoding: plain)
        else { throw HandshakeError("a join request that does not open") }
        guard Sodium.Sign.verify(req.signature, of: JoinHandshake.requestTranscript(transcript), publicKey: req.publicKey) else {
            throw HandshakeError("the joining node does not prove its key")
        }
        return req
    }

    /// Whether the request proves the secret of the token whose hash the cluster keeps.
    public func proves(_ req: JoinRequest, secretHash: [UInt8]) -> Bool {
        Sodium.constantTimeEqual(req.proof, JoinHandshake.tokenProof(secretHash: secretHash, transcript: transcript, name: req.name, publicKey: req.publicKey))
    }

    public func answer(_ a: JoinAnswer) -> [UInt8] {
        guard let k = keys else { return [] }
        return (try? Sodium.CounterAEAD.seal(a.encoded, key: k.send, counter: 1)) ?? []
    }
}
