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
        #expect(!sealedRequest.contains(subsequence: token.secret), "the secret travels sealed")
        let req = try d.request(sealedRequest)
        #expect(req.tokenID == token.id && req.secret == token.secret && req.name == "new" && req.publicKey == key.publicKey)

        let cred = try #require(m.cluster.issue(clusterID: "c1", node: "new", publicKey: key.publicKey, role: .storage, issuedMs: 2))
        let grant = JoinGrant(clusterID: "c1", clusterKey: m.cluster.publicKey, credential: cred, keyring: [Sodium.randomBytes(32)], seeds: ["127.0.0.1:7946"])
        #expect(try j.answer(d.answer(.accepted(grant))) == .accepted(grant))
        #expect(try j.answer(d.answer(.refused("token expired"))) == .refused("token expired"))
        #expect(try j.answer(d.answer(.redirect(["127.0.0.1:7301"]))) == .redirect(["127.0.0.1:7301"]))

        // A grant for another key or name, or signed by another cluster key, is refused.
        let stranger = m.cluster.issue(clusterID: "c1", node: "new", publicKey: NodeKey.generate().publicKey, role: .storage, issuedMs: 2)!
        var g2 = grant
        g2.credential = stranger
        #expect(throws: JoinError.self) { try j.answer(d.answer(.accepted(g2))) }
        var g3 = grant
        g3.credential = ClusterKey.generate().issue(clusterID: "c1", node: "new", publicKey: key.publicKey, role: .storage, issuedMs: 2)!
        #expect(throws: JoinError.self) { try j.answer(d.answer(.accepted(g3))) }
    }

    @Test func aSeedOfAnotherClusterOrAnImpostorNeverSeesTheSecret() throws {
        let m = Member()
        let token = JoinToken.generate(fingerprint: m.cluster.fingerprint)

        // A member of another cluster: its proof is valid, for the wrong key.
        let foreign = Member()
        var j1 = joiner(token)
        var d1 = JoinDoorman(proof: foreign.proof, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: JoinError.self) { try j1.request(answering: try d1.proof(answering: j1.hello)) }

        // An impostor that shows the right cluster key and a real member's credential, but
        // does not hold that member's node key.
        var stolen = m.proof
        stolen = JoinDoorman.Proof(clusterKey: stolen.clusterKey, credential: stolen.credential, nodeKey: NodeKey.generate())
        var j2 = joiner(token)
        var d2 = JoinDoorman(proof: stolen, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: JoinError.self) { try j2.request(answering: try d2.proof(answering: j2.hello)) }

        // A credential the impostor signed itself, presenting the right cluster key.
        let selfMade = NodeKey.generate()
        let fake = NodeCredential(
            clusterID: "c1", node: "m1", publicKey: selfMade.publicKey, role: .all, issuedMs: 1, signature: [UInt8](repeating: 7, count: 64))
        var j3 = joiner(token)
        var d3 = JoinDoorman(proof: .init(clusterKey: m.cluster.publicKey, credential: fake, nodeKey: selfMade), ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: JoinError.self) { try j3.request(answering: try d3.proof(answering: j3.hello)) }

        // A member with no credential says so.
        var j4 = joiner(token)
        var d4 = JoinDoorman(proof: nil, ephemeral: Sodium.KeyExchange.keyPair())
        #expect(throws: JoinError("the seed cannot prove the cluster key: this member has no node credential (it joined before join tokens)")) {
            try j4.request(answering: try d4.proof(answering: j4.hello))
        }

        // A proof recorded from one handshake does not verify in another (fresh ephemeral keys).
        var j5 = joiner(token), j6 = joiner(token)
        var d5 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let recorded = try d5.proof(answering: j5.hello)
        _ = try j5.request(answering: recorded)
        #expect(throws: JoinError.self) { try j6.request(answering: recorded) }

        // Garbage of every length.
        var j7 = joiner(token)
        for n in [0, 1, 32, 33, 40, 200] {
            #expect(throws: JoinError.self) { try j7.request(answering: Sodium.randomBytes(n)) }
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
        #expect(throws: JoinError.self) { try d2.request(request) }
        var flipped = request
        flipped[3] ^= 1
        #expect(throws: JoinError.self) { try d.request(flipped) }
        #expect(throws: JoinError.self) { try JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair()).request(request) }
        // A joiner naming a public key whose secret half it does not hold.
        let mine = NodeKey.generate(), theirs = NodeKey.generate()
        var j4 = joiner(token, NodeKey(publicKey: theirs.publicKey, secretKey: mine.secretKey))
        var d4 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        let forged = try j4.request(answering: try d4.proof(answering: j4.hello))
        #expect(throws: JoinError("the joining node does not prove its key")) { try d4.request(forged) }

        var d3 = JoinDoorman(proof: m.proof, ephemeral: Sodium.KeyExchange.keyPair())
        for bad in [[], [2] + Sodium.randomBytes(32), [1] + Sodium.randomBytes(31), Sodium.randomBytes(100)] {
            #expect(throws: JoinError.self) { try d3.proof(answering: bad) }
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(subsequence s: [UInt8]) -> Bool {
        guard s.count <= count else { return false }
        return (0...(count - s.count)).contains { Array(self[$0..<($0 + s.count)]) == s }
    }
}
