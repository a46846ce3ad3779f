import Support

/// The handshake that opens every node-to-node TCP connection (Raft and data), both ends as pure
/// steps over bytes: mutual authentication by node credentials and a session key each way.
///
/// 1. initiator → acceptor `hello`: version · purpose · ciphers it runs · ephemeral X25519 key.
/// 2. acceptor → initiator: its ephemeral key · the cipher chosen · sealed(its credential, its
///    node key's signature over the transcript so far).
/// 3. initiator → acceptor: sealed(its credential, its signature over the whole transcript).
///
/// Each side checks the other's credential against the cluster key, the cluster id and the
/// caller's `admit` (which refuses revoked nodes), and the signature against the credential. The
/// session keys come from the ephemeral keys, so nothing recorded from one connection opens on
/// another, and every later message is numbered (`NodeSession`): a replayed, dropped or
/// reordered frame fails to open.
public enum NodeHandshake {
    public static let version: UInt8 = 1
    /// What a data connection's initiator sends where a pre-credential peer sends its challenge.
    public static let magic: [UInt8] = Array("STKS-NODE-v1".utf8) + [0, 0, 0, 0]
    public static let maxMessageBytes = 16 << 10

    public enum Purpose: UInt8, Sendable {
        case raft = 1
        case data = 2
    }

    /// What a node proves itself with.
    public struct Identity: Sendable {
        public var clusterKey: [UInt8]
        public var credential: NodeCredential
        public var nodeKey: NodeKey
        public init(clusterKey: [UInt8], credential: NodeCredential, nodeKey: NodeKey) {
            self.clusterKey = clusterKey; self.credential = credential; self.nodeKey = nodeKey
        }
    }

    /// nil admits the peer; otherwise the reason it is refused (revoked, removed…).
    public typealias Admit = @Sendable (NodeCredential) -> String?

    static func hash(_ label: String, _ parts: [[UInt8]]) -> [UInt8] {
        var w = BinaryWriter()
        w.string(label)
        for p in parts { w.blob(p) }
        return Sodium.hash(w.bytes)
    }

    static func check(
        _ sealedProof: [UInt8], key: [UInt8], cipher: Sodium.CounterAEAD.Cipher, transcript: ([UInt8]) -> [UInt8], identity: Identity, admit: Admit
    )
        throws(HandshakeError) -> (NodeCredential, [UInt8])
    {
        guard let plain = try? Sodium.CounterAEAD.open(sealedProof, key: key, counter: 0, cipher: cipher) else {
            throw HandshakeError("the peer's proof does not open")
        }
        var r = BinaryReader(plain)
        guard let credBytes = try? r.blob(max: 4096), let sig = try? r.blob(max: 128), (try? r.expectEnd()) != nil,
            let cred = try? NodeCredential(decoding: credBytes)
        else { throw HandshakeError("the peer's proof is malformed") }
        guard cred.verify(clusterKey: identity.clusterKey), cred.clusterID == identity.credential.clusterID else {
            throw HandshakeError("the peer's credential is not one of this cluster's")
        }
        let t = transcript(credBytes)
        guard Sodium.Sign.verify(sig, of: t, publicKey: cred.publicKey) else { throw HandshakeError("the peer does not hold its credential's key") }
        if let why = admit(cred) { throw HandshakeError("node \(cred.node) is not admitted: \(why)") }
        return (cred, t)
    }

    static func proof(_ identity: Identity, transcript: [UInt8], key: [UInt8], cipher: Sodium.CounterAEAD.Cipher) throws(HandshakeError) -> [UInt8] {
        var w = BinaryWriter()
        w.blob(identity.credential.encoded); w.blob(identity.nodeKey.sign(transcript))
        guard let sealed = try? Sodium.CounterAEAD.seal(w.bytes, key: key, counter: 0, cipher: cipher) else { throw HandshakeError("cannot seal the proof") }
        return sealed
    }

    /// The connecting side.
    public struct Initiator: Sendable {
        let identity: Identity
        let purpose: Purpose
        let ephemeral: (publicKey: [UInt8], secretKey: [UInt8])
        let admit: Admit

        public init(identity: Identity, purpose: Purpose, ephemeral: (publicKey: [UInt8], secretKey: [UInt8]), admit: @escaping Admit) {
            self.identity = identity; self.purpose = purpose; self.ephemeral = ephemeral; self.admit = admit
        }

        public var hello: [UInt8] { [NodeHandshake.version, purpose.rawValue, Sodium.CounterAEAD.best.rawValue] + ephemeral.publicKey }

        /// Checks the acceptor's answer; returns the initiator's proof to send and the session.
        public func finish(answering answer: [UInt8]) throws(HandshakeError) -> (proof: [UInt8], session: NodeSession) {
            var r = BinaryReader(answer)
            guard let eph = try? r.bytes(Sodium.KeyExchange.publicKeyBytes), let c = try? r.u8(), let cipher = Sodium.CounterAEAD.Cipher(rawValue: c),
                cipher == .chacha20poly1305 || cipher == Sodium.CounterAEAD.best,
                let sealed = try? r.blob(max: NodeHandshake.maxMessageBytes), (try? r.expectEnd()) != nil,
                let keys = try? Sodium.KeyExchange.clientKeys(publicKey: ephemeral.publicKey, secretKey: ephemeral.secretKey, serverPublicKey: eph)
            else { throw HandshakeError("the peer's answer is not a Stacks node handshake") }
            let hello = self.hello
            let (peer, tA) = try NodeHandshake.check(
                sealed, key: keys.receive, cipher: cipher,
                transcript: { NodeHandshake.hash("stacks node acceptor", [hello, eph, [c], $0]) }, identity: identity, admit: admit)
            let tI = NodeHandshake.hash("stacks node initiator", [tA, identity.credential.encoded])
            let proof = try NodeHandshake.proof(identity, transcript: tI, key: keys.send, cipher: cipher)
            return (proof, NodeSession(send: keys.send, receive: keys.receive, cipher: cipher, peer: peer))
        }
    }

    /// The accepting side.
    public struct Acceptor: Sendable {
        let identity: Identity
        let ephemeral: (publicKey: [UInt8], secretKey: [UInt8])
        let admit: Admit
        var keys: (receive: [UInt8], send: [UInt8])?
        var transcript: [UInt8] = []
        var cipher = Sodium.CounterAEAD.Cipher.chacha20poly1305
        public private(set) var purpose: Purpose?

        public init(identity: Identity, ephemeral: (publicKey: [UInt8], secretKey: [UInt8]), admit: @escaping Admit) {
            self.identity = identity; self.ephemeral = ephemeral; self.admit = admit
        }

        /// The answer to a hello; throws for anything that is not one.
        public mutating func answer(_ hello: [UInt8]) throws(HandshakeError) -> [UInt8] {
            guard hello.count == 3 + Sodium.KeyExchange.publicKeyBytes, hello[0] == NodeHandshake.version, let p = Purpose(rawValue: hello[1]),
                let theirs = Sodium.CounterAEAD.Cipher(rawValue: hello[2]),
                let k = try? Sodium.KeyExchange.serverKeys(
                    publicKey: ephemeral.publicKey, secretKey: ephemeral.secretKey, clientPublicKey: Array(hello.dropFirst(3)))
            else { throw HandshakeError("not a node handshake hello of version \(NodeHandshake.version)") }
            cipher = theirs == .aes256gcm && Sodium.CounterAEAD.best == .aes256gcm ? .aes256gcm : .chacha20poly1305
            purpose = p
            keys = k
            let tA = NodeHandshake.hash("stacks node acceptor", [hello, ephemeral.publicKey, [cipher.rawValue], identity.credential.encoded])
            transcript = tA
            var w = BinaryWriter()
            for b in ephemeral.publicKey { w.u8(b) }
            w.u8(cipher.rawValue)
            w.blob(try NodeHandshake.proof(identity, transcript: tA, key: k.send, cipher: cipher))
            return w.bytes
        }

        /// Checks the initiator's proof; returns the session.
        public func finish(_ proof: [UInt8]) throws(HandshakeError) -> NodeSession {
            guard let keys else { throw HandshakeError("no hello yet") }
            let tA = transcript
            let (peer, _) = try NodeHandshake.check(
                proof, key: keys.receive, cipher: cipher, transcript: { NodeHandshake.hash("stacks node initiator", [tA, $0]) }, identity: identity,
                admit: admit)
            return NodeSession(send: keys.send, receive: keys.receive, cipher: cipher, peer: peer)
        }
    }
}

/// An authenticated connection's keys and message numbers (the handshake used number 0).
public struct NodeSession: Sendable {
    let sendKey: [UInt8]
    let receiveKey: [UInt8]
    public let cipher: Sodium.CounterAEAD.Cipher
    /// Who the other end proved to be.
    public let peer: NodeCredential
    var sent: UInt64 = 1
    var received: UInt64 = 1

    init(send: [UInt8], receive: [UInt8], cipher: Sodium.CounterAEAD.Cipher, peer: NodeCredential) {
        sendKey = send; receiveKey = receive; self.cipher = cipher; self.peer = peer
    }

    public mutating func seal(_ plain: [UInt8]) -> [UInt8] {
        defer { sent += 1 }
        // Sealing with a 32-byte key and a cipher this machine runs cannot fail.
        return (try? Sodium.CounterAEAD.seal(plain, key: sendKey, counter: sent, cipher: cipher)) ?? []
    }

    /// nil for anything but the next message from the other end.
    public mutating func open(_ sealed: [UInt8]) -> [UInt8]? {
        guard let p = try? Sodium.CounterAEAD.open(sealed, key: receiveKey, counter: received, cipher: cipher) else { return nil }
        received += 1
        return p
    }
}

/// Who a node is to its peers, and whom it lets in: handed to the Raft and data transports.
public protocol PeerAuthority: Sendable {
    /// This node's proof; nil on a node with no credential, which speaks the protocol from before
    /// credentials (frames sealed under the gossip keyring).
    var identity: NodeHandshake.Identity? { get }
    /// nil admits a peer whose credential verified; otherwise the reason it is refused.
    func admit(_ credential: NodeCredential) -> String?
}
