import Testing

@testable import Security

@Suite struct IdentityTests {
    @Test func credentialsVerifyOnlyUnderTheirClusterKeyAndUnchanged() throws {
        let cluster = ClusterKey.generate(), other = ClusterKey.generate()
        let node = NodeKey.generate()
        let cred = try #require(cluster.issue(clusterID: "c1", node: "n1", publicKey: node.publicKey, role: .storage, issuedMs: 5))
        #expect(cred.verify(clusterKey: cluster.publicKey))
        #expect(!cred.verify(clusterKey: other.publicKey))
        #expect(try NodeCredential(decoding: cred.encoded) == cred)
        // Any field changed breaks the signature.
        var renamed = cred
        renamed.node = "n2"
        #expect(!renamed.verify(clusterKey: cluster.publicKey))
        var promoted = cred
        promoted.role = .all
        #expect(!promoted.verify(clusterKey: cluster.publicKey))
        var rekeyed = cred
        rekeyed.publicKey = NodeKey.generate().publicKey
        #expect(!rekeyed.verify(clusterKey: cluster.publicKey))
        // A node without the secret key signs nothing.
        #expect(ClusterKey(publicKey: cluster.publicKey).issue(clusterID: "c1", node: "n", publicKey: node.publicKey, role: .all, issuedMs: 0) == nil)
        #expect(Sodium.Sign.publicKey(of: cluster.secretKey!) == cluster.publicKey)
    }

    @Test func tokensRoundTripAndMalformedOnesAreRefused() throws {
        let t = JoinToken.generate(fingerprint: ClusterKey.generate().fingerprint)
        #expect(t.text.hasPrefix("STKS1-"))
        #expect(JoinToken(text: t.text) == t)
        #expect(JoinToken(text: "  \(t.text)\n") == t)
        #expect(t.secretHash == JoinToken.hash(secret: t.secret))
        #expect(t.secretHash != t.secret)
        #expect(JoinToken.generate(fingerprint: t.fingerprint).id != t.id)
        let parts = t.text.split(separator: "-").map(String.init)
        for bad in [
            "", "STKS1", "STKS2-\(parts[1])-\(parts[2])-\(parts[3])", "STKS1-\(parts[1])-\(parts[2])",
            "STKS1-\(parts[1].dropLast(2))-\(parts[2])-\(parts[3])", "STKS1-\(parts[1])-\(parts[2])-\(parts[3])zz",
            "STKS1-\(parts[1])-\(parts[2])-\(parts[3])-x", t.text.replacingOccurrences(of: "-", with: "."),
        ] {
            #expect(JoinToken(text: bad) == nil, "\(bad)")
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}

/// Both ends of the join handshake driven back to back, and every way a seed or a joiner can lie.
@Suite struct JoinHandshakeTests {
    struct Member {
        let cluster = ClusterKey.generate()
        let key = NodeKey.generate()
        var proof: JoinDoorman.Proof {
            JoinDoorman.Proof(
                clusterKey: cluster.publicKey, credential: cluster.issue(clusterID: "c1", node: "m1", publicKey: key.publicKey, role: .all, issuedMs: 1)!,
                nodeKey: key)
        }
    }

    func joiner(_ token: JoinToken, _ key: NodeKey = .generate()) -> Joiner {
        Joiner(token: token, name: "new", nodeKey: key, ephemeral: Sodium.KeyExchange.keyPair())
    }

    @Test func aJoinerEnrolsThroughAMemberThatProvesTheClusterKey() throws {
        let m = Member()
        let token = JoinToken.generate(fingerprint: m.cluster.fingerprint)
        let key = NodeKey.generate()
        var j = joiner(token, key)
        var d = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let proof = try d.proof(answering: j.hello)
        let sealedRequest = try j.request(answering: proof)
        let req = try d.request(sealedRequest)
        #expect(req.tokenID == token.id && req.name == "new" && req.publicKey == key.publicKey)
        #expect(!req.proof.contains(subsequence: token.secret) && !req.proof.contains(subsequence: token.secretHash), "the secret never travels")
        #expect(d.proves(req, secretHash: token.secretHash))
        #expect(!d.proves(req, secretHash: JoinToken.generate(fingerprint: m.cluster.fingerprint).secretHash), "another token's secret")

        let cred = try #require(m.cluster.issue(clusterID: "c1", node: "new", publicKey: key.publicKey, role: .storage, issuedMs: 2))
        let grant = JoinGrant(
            clusterID: "c1", clusterKey: m.cluster.publicKey, credential: cred, keyring: [Sodium.randomBytes(32)], seeds: ["127.0.0.1:7946"],
            secretsKey: Sodium.randomBytes(32), signingKey: m.cluster.secretKey ?? [], members: [GrantedMember(name: "m", publicKey: Sodium.randomBytes(32))])
        #expect(try j.answer(d.answer(.accepted(grant))) == .accepted(grant))
        #expect(try j.answer(d.answer(.refused("token expired"))) == .refused("token expired"))
        #expect(try j.answer(d.answer(.redirect(["127.0.0.1:7301"]))) == .redirect(["127.0.0.1:7301"]))

        // A grant for another key or name, or signed by another cluster key, is refused.
        let stranger = m.cluster.issue(clusterID: "c1", node: "new", publicKey: NodeKey.generate().publicKey, role: .storage, issuedMs: 2)!
        var g2 = grant
        g2.credential = stranger
        #expect(throws: HandshakeError.self) { try j.answer(d.answer(.accepted(g2))) }
        var g3 = grant
        g3.credential = ClusterKey.generate().issue(clusterID: "c1", node: "new", publicKey: key.publicKey, role: .storage, issuedMs: 2)!
        #expect(throws: HandshakeError.self) { try j.answer(d.answer(.accepted(g3))) }
    }

    /// A removed node keeps the cluster's signing key and can pose as a member to a joiner that
    /// dials it: it learns a proof bound to that handshake, never the secret, and the proof
    /// proves nothing in a handshake of its own with a real member.
    @Test func anImpostorHoldingTheSigningKeyLearnsNothingThatJoins() throws {
        let m = Member()
        let token = JoinToken.generate(fingerprint: m.cluster.fingerprint)
        let ghost = NodeKey.generate()
        let minted = try #require(m.cluster.issue(clusterID: "c1", node: "ghost", publicKey: ghost.publicKey, role: .all, issuedMs: 5))
        var j = joiner(token)
        var impostor = JoinDoorman(proof: .init(clusterKey: m.cluster.publicKey, credential: minted, nodeKey: ghost), ephemeral: Sodium.KeyExchange.keyPair())
        let hello = try impostor.proof(answering: j.hello)
        let got = try impostor.request(try j.request(answering: hello))
        #expect(impostor.proves(got, secretHash: token.secretHash), "a true proof, for that handshake only")
        #expect(!got.proof.contains(subsequence: token.secret) && !got.proof.contains(subsequence: token.secretHash))
        var real = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        _ = try real.proof(answering: joiner(JoinToken.generate(fingerprint: m.cluster.fingerprint)).hello)
        #expect(!real.proves(got, secretHash: token.secretHash))
    }

    @Test func aSeedOfAnotherClusterOrAnImpostorNeverSeesTheSecret() throws {
        let m = Member()
        let token = JoinToken.generate(fingerprint: m.cluster.fingerprint)

        // A member of another cluster: its proof is valid, for the wrong key.
        let foreign = Member()
        var j1 = joiner(token)
        var d1 = JoinDoorman(proof: foreign.proof, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: HandshakeError.self) { try j1.request(answering: try d1.proof(answering: j1.hello)) }

        // An impostor that shows the right cluster key and a real member's credential, but
        // does not hold that member's node key.
        var stolen = m.proof
        stolen = JoinDoorman.Proof(clusterKey: stolen.clusterKey, credential: stolen.credential, nodeKey: NodeKey.generate())
        var j2 = joiner(token)
        var d2 = JoinDoorman(proof: stolen, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: HandshakeError.self) { try j2.request(answering: try d2.proof(answering: j2.hello)) }

        // A credential the impostor signed itself, presenting the right cluster key.
        let selfMade = NodeKey.generate()
        let fake = NodeCredential(
            clusterID: "c1", node: "m1", publicKey: selfMade.publicKey, role: .all, issuedMs: 1, signature: [UInt8](repeating: 7, count: 64))
        var j3 = joiner(token)
        var d3 = JoinDoorman(proof: .init(clusterKey: m.cluster.publicKey, credential: fake, nodeKey: selfMade), ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: HandshakeError.self) { try j3.request(answering: try d3.proof(answering: j3.hello)) }

        // A member with no credential says so.
        var j4 = joiner(token)
        var d4 = JoinDoorman(proof: nil, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: HandshakeError("the seed cannot prove the cluster key: this member has no node credential (it joined before join tokens)")) {
            try j4.request(answering: try d4.proof(answering: j4.hello))
        }

        // A proof recorded from one handshake does not verify in another (fresh ephemeral keys).
        var j5 = joiner(token), j6 = joiner(token)
        var d5 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let recorded = try d5.proof(answering: j5.hello)
        _ = try j5.request(answering: recorded)
        #expect(throws: HandshakeError.self) { try j6.request(answering: recorded) }

        // Garbage of every length.
        var j7 = joiner(token)
        for n in [0, 1, 32, 33, 40, 200] {
            #expect(throws: HandshakeError.self) { try j7.request(answering: Sodium.randomBytes(n)) }
        }
    }

    @Test func theMemberRefusesReplayedOrForgedRequests() throws {
        let m = Member()
        let token = JoinToken.generate(fingerprint: m.cluster.fingerprint)
        var j = joiner(token)
        var d = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let request = try j.request(answering: try d.proof(answering: j.hello))
        _ = try d.request(request)

        // The same request replayed into another handshake does not open there.
        var j2 = joiner(token)
        var d2 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        _ = try j2.request(answering: try d2.proof(answering: j2.hello))
        #expect(throws: HandshakeError.self) { try d2.request(request) }
        var flipped = request
        flipped[3] ^= 1
        #expect(throws: HandshakeError.self) { try d.request(flipped) }
        #expect(throws: HandshakeError.self) { try JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair()).request(request) }
        // A joiner naming a public key whose secret half it does not hold.
        let mine = NodeKey.generate(), theirs = NodeKey.generate()
        var j4 = joiner(token, NodeKey(publicKey: theirs.publicKey, secretKey: mine.secretKey))
        var d4 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let forged = try j4.request(answering: try d4.proof(answering: j4.hello))
        #expect(throws: HandshakeError("the joining node does not prove its key")) { try d4.request(forged) }

        var d3 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        // Versions 1 (it sent the secret itself) and 3, a short key, garbage.
        for bad in [[], [1] + Sodium.randomBytes(32), [3] + Sodium.randomBytes(32), [2] + Sodium.randomBytes(31), Sodium.randomBytes(100)] {
            #expect(throws: HandshakeError.self) { try d3.proof(answering: bad) }
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(subsequence s: [UInt8]) -> Bool {
        guard s.count <= count else { return false }
        return (0...(count - s.count)).contains { Array(self[$0..<($0 + s.count)]) == s }
    }
}

/// Both ends of the node-to-node handshake, and every way a peer can fail to prove itself.
@Suite struct NodeHandshakeTests {
    struct Cluster {
        let key = ClusterKey.generate()
        func node(_ name: String, cluster id: String = "c1") -> NodeHandshake.Identity {
            let k = NodeKey.generate()
            return NodeHandshake.Identity(
                clusterKey: key.publicKey, credential: key.issue(clusterID: id, node: name, publicKey: k.publicKey, role: .all, issuedMs: 1)!, nodeKey: k)
        }
    }

    static let admitAll: NodeHandshake.Admit = { _ in nil }

    /// Runs a handshake; returns both sessions, or the error of whichever side refused.
    func connect(
        _ a: NodeHandshake.Identity, _ b: NodeHandshake.Identity, admitA: @escaping NodeHandshake.Admit = admitAll,
        admitB: @escaping NodeHandshake.Admit = admitAll
    ) throws(HandshakeError) -> (NodeSession, NodeSession) {
        let i = NodeHandshake.Initiator(identity: a, purpose: .data, ephemeral: Sodium.KeyExchange.keyPair(), admit: admitA)
        var r = NodeHandshake.Acceptor(identity: b, ephemeral: Sodium.KeyExchange.keyPair(), admit: admitB)
        let answer = try r.answer(i.hello)
        let (proof, si) = try i.finish(answering: answer)
        return (si, try r.finish(proof))
    }

    @Test func twoMembersAuthenticateEachOtherAndExchangeNumberedFrames() throws {
        let c = Cluster()
        var (a, b) = try connect(c.node("a"), c.node("b"))
        #expect(a.peer.node == "b" && b.peer.node == "a")
        #expect(a.cipher == Sodium.CounterAEAD.best && b.cipher == a.cipher)
        let m1 = a.seal(Array("one".utf8)), m2 = a.seal(Array("two".utf8))
        var b2 = b
        #expect(b2.open(m2) == nil, "out of order")
        #expect(b.open(m1) == Array("one".utf8))
        #expect(b.open(m1) == nil, "replayed")
        #expect(b.open(m2) == Array("two".utf8))
        let back = b.seal([1, 2, 3])
        #expect(a.open(back) == [1, 2, 3])
        // A frame from another connection between the same two nodes does not open here.
        var (x, _) = try connect(c.node("a"), c.node("b"))
        #expect(b.open(x.seal([9])) == nil)
        var flipped = a.seal([7, 7])
        flipped[0] ^= 1
        #expect(b.open(flipped) == nil)
    }

    @Test func everyPeerThatCannotProveItselfIsRefused() throws {
        let c = Cluster(), other = Cluster()
        // Another cluster's member, either side.
        #expect(throws: HandshakeError.self) { try connect(other.node("x"), c.node("b")) }
        #expect(throws: HandshakeError.self) { try connect(c.node("a"), other.node("y")) }
        // The right key, another cluster id.
        #expect(throws: HandshakeError.self) { try connect(c.node("a", cluster: "c2"), c.node("b")) }
        // A credential presented without its node key.
        var thief = c.node("a")
        thief.nodeKey = NodeKey.generate()
        #expect(throws: HandshakeError.self) { try connect(thief, c.node("b")) }
        #expect(throws: HandshakeError.self) { try connect(c.node("b"), thief) }
        // A revoked node is refused by whoever checks.
        let revoked: NodeHandshake.Admit = { $0.node == "a" ? "removed from the cluster" : nil }
        #expect(throws: HandshakeError("node a is not admitted: removed from the cluster")) { try connect(c.node("a"), c.node("b"), admitB: revoked) }
        #expect(throws: HandshakeError.self) { try connect(c.node("b"), c.node("a"), admitA: revoked) }
        // Garbage hellos and answers.
        var r = NodeHandshake.Acceptor(identity: c.node("b"), ephemeral: Sodium.KeyExchange.keyPair(), admit: Self.admitAll)
        for n in [0, 3, 34, 35, 36, 100] {
            #expect(throws: HandshakeError.self) { try r.answer(Sodium.randomBytes(n)) }
        }
        let i = NodeHandshake.Initiator(identity: c.node("a"), purpose: .raft, ephemeral: Sodium.KeyExchange.keyPair(), admit: Self.admitAll)
        for n in [0, 32, 33, 40, 300] {
            #expect(throws: HandshakeError.self) { try i.finish(answering: Sodium.randomBytes(n)) }
        }
        // An answer recorded from one handshake does not finish another.
        var r2 = NodeHandshake.Acceptor(identity: c.node("b"), ephemeral: Sodium.KeyExchange.keyPair(), admit: Self.admitAll)
        let recorded = try r2.answer(i.hello)
        let i2 = NodeHandshake.Initiator(identity: c.node("a"), purpose: .raft, ephemeral: Sodium.KeyExchange.keyPair(), admit: Self.admitAll)
        #expect(throws: HandshakeError.self) { try i2.finish(answering: recorded) }
        #expect(r2.purpose == .raft)
    }

    @Test func bothCiphersSealAndOpen() throws {
        let key = Sodium.randomBytes(32)
        for cipher in [Sodium.CounterAEAD.Cipher.chacha20poly1305, Sodium.CounterAEAD.best] {
            let s = try Sodium.CounterAEAD.seal([1, 2, 3], key: key, counter: 5, cipher: cipher)
            #expect(try Sodium.CounterAEAD.open(s, key: key, counter: 5, cipher: cipher) == [1, 2, 3])
            #expect(throws: SecurityError.self) { try Sodium.CounterAEAD.open(s, key: key, counter: 6, cipher: cipher) }
        }
    }
}
