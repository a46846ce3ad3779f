import Cluster
import Raft
import Support
import Testing

@Suite struct ClusterStateTests {
    func req(_ n: UInt64, _ c: Command) -> Request { Request(id: RequestID(hi: 7, lo: n), command: c) }

    @Test func appliesCommandsWithOutcomes() {
        var s = ClusterState()
        #expect(s.apply(req(1, .initCluster(id: "c1"))).outcome == .ok)
        #expect(s.apply(req(2, .initCluster(id: "c2"))).outcome == .alreadyInitialized)
        #expect(s.clusterID == "c1")
        #expect(s.apply(req(3, .createBucket(name: "b", createdMs: 5))).outcome == .ok)
        #expect(s.apply(req(4, .createBucket(name: "b", createdMs: 6))).outcome == .bucketExists)
        #expect(s.buckets["b"]?.createdMs == 5)
        #expect(s.apply(req(5, .deleteBucket(name: "b"))).outcome == .ok)
        #expect(s.apply(req(6, .deleteBucket(name: "b"))).outcome == .noSuchBucket)
        #expect(s.apply(req(7, .putAccessKey(id: "K", secret: "S"))).outcome == .ok)
        #expect(s.accessKeys == ["K": "S"])
        #expect(s.apply(req(8, .delete(key: "x"))).outcome == .noSuchKey)
    }

    /// A client retrying after a leader died between commit and reply gets the first outcome,
    /// and the command is not applied twice.
    @Test func duplicateRequestsApplyOnce() {
        var s = ClusterState()
        #expect(s.apply(req(1, .createBucket(name: "b", createdMs: 1))) == (.ok, false))
        #expect(s.apply(req(1, .createBucket(name: "b", createdMs: 1))) == (.ok, true))
        #expect(s.appliedCommands == 1)
        // Forgetting is bounded and oldest-first.
        for i in 0..<UInt64(ClusterState.rememberedRequests) { s.apply(req(100 + i, .put(key: "k", value: []))) }
        #expect(s.outcome(of: RequestID(hi: 7, lo: 1)) == nil)
        #expect(s.outcome(of: RequestID(hi: 7, lo: 100)) == .ok)
    }

    @Test func snapshotRoundTripsIncludingRememberedRequests() throws {
        var s = ClusterState()
        s.apply(req(1, .initCluster(id: "abc")))
        s.apply(req(2, .createBucket(name: "photos", createdMs: 42)))
        s.apply(req(5, .createBucket(name: "logs", createdMs: 43, scheme: ErasureScheme(k: 3, m: 3))))
        s.apply(req(3, .putAccessKey(id: "AK", secret: "SK")))
        s.apply(req(4, .put(key: "k", value: [1, 2, 3])))
        let t = try ClusterState(decoding: s.encoded())
        #expect(t == s)
        #expect(t.buckets["logs"]?.scheme == ErasureScheme(k: 3, m: 3) && t.buckets["photos"]?.scheme == nil)
        var u = t
        #expect(u.apply(req(3, .putAccessKey(id: "AK", secret: "other"))).duplicate)
        #expect(u.accessKeys["AK"] == "SK")
    }

    @Test func commandsAndFramesRoundTrip() throws {
        let commands: [Command] = [
            .initCluster(id: "x"), .createBucket(name: "b", createdMs: -1), .createBucket(name: "c", createdMs: 2, scheme: ErasureScheme(k: 2, m: 1)),
            .deleteBucket(name: "b"),
            .putAccessKey(id: "i", secret: "s"), .deleteAccessKey(id: "i"), .put(key: "k", value: [0, 255]), .delete(key: "k"),
        ]
        for (i, c) in commands.enumerated() {
            let r = req(UInt64(i), c)
            #expect(try Request(decoding: r.encoded) == r)
        }
        let snap = Snapshot(index: LogIndex(9), term: Term(3), voters: ["a", "b"], learners: ["c"], data: [1, 2])
        let messages: [RaftMessage] = [
            .preVote(term: Term(1), lastIndex: LogIndex(2), lastTerm: Term(1)), .preVoteReply(term: Term(1), granted: true),
            .vote(term: Term(2), lastIndex: LogIndex(2), lastTerm: Term(1), transfer: true), .voteReply(term: Term(2), granted: false),
            .append(
                term: Term(2), prevIndex: LogIndex(1), prevTerm: Term(1),
                entries: [Entry(term: Term(2), index: LogIndex(2), kind: .config, data: [9])], commit: LogIndex(1), readSeq: 4),
            .appendReply(term: Term(2), success: true, index: LogIndex(2), readSeq: 4), .timeoutNow(term: Term(2)),
            .installSnapshot(term: Term(3), meta: snap, offset: 10, done: true),
            .installSnapshotReply(term: Term(3), index: LogIndex(9), offset: 12, done: false),
        ]
        let frames: [Frame] =
            messages.map(Frame.raft) + [
                .forward([1, 2]), .readIndex(id: 5), .readIndexReply(id: 5, index: LogIndex(3)),
                .readIndexReply(id: 6, index: nil),
            ]
        for f in frames {
            let a = AddressedFrame(from: "n1", fromAddress: "127.0.0.1:7100", cluster: "c0ffee", to: "n2", frame: f)
            #expect(try RaftWire.decode(RaftWire.encode(a)) == a)
        }
    }

    /// Tokens are checked and counted in log order: every refusal changes nothing, a single-use
    /// token admits one node, and the same node asking again after a lost answer uses nothing.
    @Test func tokensAdmitNodesOnceAndRefuseEveryOtherWay() throws {
        var s = ClusterState()
        let hash = [UInt8](repeating: 1, count: 32), wrong = [UInt8](repeating: 2, count: 32), key = [UInt8](repeating: 3, count: 32)
        s.apply(req(1, .createToken(TokenRecord(id: "t1", secretHash: hash, role: "storage", createdMs: 0, expiresMs: 1000, usesLeft: 1))))
        s.apply(req(2, .createToken(TokenRecord(id: "t2", secretHash: hash, role: "all", createdMs: 0, expiresMs: 1000, usesLeft: 5))))
        #expect(
            s.apply(req(3, .createToken(TokenRecord(id: "t1", secretHash: wrong, role: "all", createdMs: 0, expiresMs: 9, usesLeft: 9)))).outcome
                == .tokenExists)
        let before = s
        func admit(_ n: UInt64, _ id: String, _ h: [UInt8], _ node: String, _ k: [UInt8], _ now: Int64) -> Outcome {
            s.apply(req(n, .admitNode(tokenID: id, secretHash: h, node: node, publicKey: k, nowMs: now))).outcome
        }
        #expect(admit(10, "nope", hash, "a", key, 5) == .noSuchToken)
        #expect(admit(11, "t1", wrong, "a", key, 5) == .wrongSecret)
        #expect(admit(12, "t1", hash, "a", key, 1000) == .tokenExpired)
        var refusedOnly = s
        refusedOnly = try ClusterState(decoding: refusedOnly.encoded())
        #expect(refusedOnly.tokens == before.tokens && refusedOnly.nodes.isEmpty && refusedOnly.joins.isEmpty)

        #expect(admit(13, "t1", hash, "a", key, 5) == .ok)
        #expect(s.tokens["t1"]?.usesLeft == 0 && s.nodes["a"]?.role == "storage" && s.joins.map(\.name) == ["a"])
        #expect(admit(14, "t1", hash, "b", key, 5) == .tokenUsedUp)
        #expect(admit(15, "t1", hash, "a", key, 6) == .ok, "the same enrolment again")
        #expect(s.joins.count == 1 && s.tokens["t1"]?.usesLeft == 0)
        #expect(admit(16, "t2", hash, "a", [9], 6) == .nodeExists, "a name another key holds")
        #expect(s.apply(req(17, .revokeToken(id: "t2"))).outcome == .ok)
        #expect(admit(18, "t2", hash, "c", key, 6) == .tokenRevoked)
        #expect(s.apply(req(19, .revokeToken(id: "zz"))).outcome == .noSuchToken)
        #expect(s.apply(req(20, .registerNode(NodeRecord(name: "f", publicKey: key, role: "all", joinedMs: 1, tokenID: "")))).outcome == .ok)
        #expect(s.apply(req(21, .registerNode(NodeRecord(name: "f", publicKey: [7], role: "all", joinedMs: 1, tokenID: "")))).outcome == .nodeExists)
        // A removed node's key stays refused; its name may come back with another key.
        #expect(s.apply(req(30, .removeNode(name: "zz", atMs: 9))).outcome == .noSuchNode)
        #expect(s.apply(req(31, .removeNode(name: "a", atMs: 9))).outcome == .ok)
        #expect(s.removedNodes == ["a"] && s.nodes["a"]?.removedMs == 9)
        #expect(s.apply(req(32, .removeNode(name: "a", atMs: 10))).outcome == .noSuchNode)
        #expect(s.apply(req(38, .registerNode(NodeRecord(name: "a", publicKey: key, role: "all", joinedMs: 1, tokenID: "")))).outcome == .nodeExists)
        #expect(s.nodes["a"]?.removedMs == 9, "registerNode never revives a removed node")
        s.apply(req(33, .createToken(TokenRecord(id: "t4", secretHash: hash, role: "all", createdMs: 0, expiresMs: 1000, usesLeft: 5))))
        #expect(admit(34, "t4", hash, "a", key, 7) == .nodeExists, "the removed key")
        #expect(admit(35, "t4", hash, "a", [5, 5], 7) == .ok)
        #expect(s.removedNodes.isEmpty && s.nodes["a"]?.publicKey == [5, 5])
        #expect(s.apply(req(36, .rotateGossipKey([1]))).outcome == .invalidLayout)
        #expect(s.apply(req(37, .rotateGossipKey([UInt8](repeating: 4, count: 32)))).outcome == .ok)
        #expect(s.gossipKey == [UInt8](repeating: 4, count: 32))
        #expect(try ClusterState(decoding: s.encoded()) == s)
        // Tokens a day past their end are dropped when the next one is made.
        s.apply(
            req(
                22,
                .createToken(
                    TokenRecord(id: "t3", secretHash: hash, role: "all", createdMs: 1000 + ClusterState.expiredTokensKeptMs + 1, expiresMs: .max, usesLeft: 1)))
        )
        #expect(s.tokens.keys.sorted() == ["t3"])
        for c: Command in [
            .createToken(TokenRecord(id: "t", secretHash: hash, role: "all", createdMs: 1, expiresMs: 2, usesLeft: 3, revoked: true)),
            .revokeToken(id: "t"), .admitNode(tokenID: "t", secretHash: hash, node: "n", publicKey: key, nowMs: -4),
            .registerNode(NodeRecord(name: "n", publicKey: key, role: "compute", joinedMs: 8, tokenID: "")),
            .registerNode(NodeRecord(name: "n", publicKey: key, role: "compute", joinedMs: 8, tokenID: "", removedMs: 9)),
            .removeNode(name: "n", atMs: 3), .rotateGossipKey(key),
        ] {
            #expect(try Request(decoding: req(1, c).encoded) == req(1, c))
        }
    }

    /// Snapshots written before buckets had schemes (format 2) still load, every bucket on the layout's scheme.
    @Test func formatTwoSnapshotsLoad() throws {
        var s = ClusterState()
        s.apply(req(1, .initCluster(id: "abc")))
        s.apply(req(2, .createBucket(name: "photos", createdMs: 42)))
        var bucket = BinaryWriter()
        bucket.string("photos"); bucket.i64(42)
        var bytes = s.encoded()
        // Format 4's tokens, nodes and joins (three empty counts), no gossip key, no users and the
        // one bucket's owner (""), then format 5's secrets key (none, generation 0) and gossip
        // ring (version 0, no keys), sit before the counters and the two remembered ids.
        let tail = 8 + 4 + 2 * 17, added = [UInt8](repeating: 0, count: 17) + [1, 0, 0, 0] + [0, 0, 0, 0] + [UInt8](repeating: 0, count: 10)
        #expect(Array(bytes[(bytes.count - tail - added.count)..<(bytes.count - tail)]) == added)
        bytes.removeSubrange((bytes.count - tail - added.count)..<(bytes.count - tail))
        let at = try #require((0...(bytes.count - bucket.bytes.count)).first { Array(bytes[$0..<($0 + bucket.bytes.count)]) == bucket.bytes })
        let end = at + bucket.bytes.count
        #expect(bytes[end] == 0)
        bytes.remove(at: end)  // format 2 had no scheme byte
        bytes[0] = 2
        let old = try ClusterState(decoding: bytes)
        #expect(old == s && old.buckets["photos"]?.scheme == nil)
    }

    /// A secrets key rotation replaces every user's sealed secret at once or nothing: one built
    /// on a state that has moved on (a user made meanwhile, another rotation) is `stale`, and a
    /// user sealed under the key before it is refused after it. Rotated users, the key and its
    /// generation survive a snapshot and the log's encoding.
    @Test func secretsRotationCoversEveryUserOrNothing() throws {
        var s = ClusterState()
        let key = [UInt8](repeating: 7, count: 32)
        let alice = UserKey(id: "AKALICE", name: "alice", sealedSecret: [1, 2], createdMs: 5)
        #expect(s.apply(req(1, .putUser(alice))).outcome == .ok)
        var rotated = alice
        (rotated.sealedSecret, rotated.keyGeneration, rotated.previousSealed, rotated.previousUntilMs) = ([3, 4], 1, [5, 6], 99)
        var bob = UserKey(id: "AKBOB", name: "bob", sealedSecret: [9], createdMs: 6)
        for (i, bad) in [
            Command.rotateSecrets(key: key, generation: 2, users: [rotated]),  // skips a generation
            .rotateSecrets(key: key, generation: 1, users: []),  // leaves alice under the old key
            .rotateSecrets(key: key, generation: 1, users: [rotated, bob]),  // bob is not in the state
            .rotateSecrets(key: Array(key.prefix(16)), generation: 1, users: [rotated]),
        ].enumerated() {
            #expect(s.apply(req(10 + UInt64(i), bad)).outcome == .stale)
        }
        #expect(s.secretsKey == nil && s.secretsGeneration == 0 && s.users["AKALICE"] == alice)
        let rotation = Command.rotateSecrets(key: key, generation: 1, users: [rotated])
        #expect(s.apply(req(20, rotation)).outcome == .ok)
        #expect(s.secretsKey == key && s.secretsGeneration == 1 && s.users["AKALICE"] == rotated)
        #expect(s.apply(req(21, .putUser(bob))).outcome == .stale)  // sealed under generation 0
        bob.keyGeneration = 1
        #expect(s.apply(req(22, .putUser(bob))).outcome == .ok)
        #expect(s.apply(req(23, rotation)).outcome == .stale)  // built before bob, and generation 1 again
        #expect(try ClusterState(decoding: s.encoded()) == s)
        for c in [rotation, .putUser(bob), .putUser(alice)] { #expect(try Request(decoding: req(1, c).encoded) == req(1, c)) }
    }

    /// Keyring changes carried by the log: each names the whole ring at the next version (a
    /// change built on an older ring is `stale`), the primary must be in it, and a removal's
    /// rotation resets it to the one new key.
    @Test func gossipKeyringChangesNameTheWholeRingInOrder() throws {
        var s = ClusterState()
        let (a, b, c) = ([UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32), [UInt8](repeating: 3, count: 32))
        #expect(s.apply(req(1, .setGossipKeyring(version: 1, primary: a, keys: [a, b]))).outcome == .ok)
        #expect(s.apply(req(2, .setGossipKeyring(version: 1, primary: b, keys: [a, b]))).outcome == .stale)
        for (i, bad) in [[a], [b, b], [b, Array(c.prefix(8))], [[UInt8]](repeating: b, count: 17)].enumerated() {
            #expect(s.apply(req(10 + UInt64(i), .setGossipKeyring(version: 2, primary: b, keys: bad))).outcome == .invalidLayout)
        }
        #expect(s.gossipKey == a && s.gossipKeys == [a, b] && s.gossipKeyringVersion == 1)
        #expect(s.apply(req(3, .setGossipKeyring(version: 2, primary: b, keys: [b]))).outcome == .ok)
        #expect(try ClusterState(decoding: s.encoded()) == s)
        #expect(s.apply(req(4, .rotateGossipKey(c))).outcome == .ok)
        #expect(s.gossipKey == c && s.gossipKeys == [c] && s.gossipKeyringVersion == 3)
        let change = req(5, .setGossipKeyring(version: 4, primary: c, keys: [c, a]))
        #expect(try Request(decoding: change.encoded) == change)
    }

    /// A scheme out of range (more than 32 data shards) in a command or a snapshot is refused.
    @Test func schemesOutOfRangeAreRefused() {
        let bad = req(1, .createBucket(name: "b", createdMs: 0, scheme: ErasureScheme(k: 40, m: 1)))
        #expect(throws: DecodeError.self) { try Request(decoding: bad.encoded) }
        var s = ClusterState()
        s.apply(bad)
        #expect(throws: DecodeError.self) { try ClusterState(decoding: s.encoded()) }
    }

    /// Damaged or hostile input is refused with an error, never a crash. Seeded; the seed is printed on failure.
    @Test(arguments: 0..<50) func garbageIsRejected(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let good = RaftWire.encode(
            AddressedFrame(
                from: "a", fromAddress: "127.0.0.1:1", cluster: "", to: "b",
                frame: .raft(
                    .append(
                        term: Term(1), prevIndex: .zero, prevTerm: Term(0), entries: [Entry(term: Term(1), index: LogIndex(1), data: [1])],
                        commit: .zero, readSeq: 0))))
        for _ in 0..<200 {
            var b = good
            switch rng.next() % 3 {
            case 0:
                b = Array(b.prefix(Int(rng.next() % UInt64(b.count))))
                #expect(throws: (any Error).self, "seed \(seed)") { try RaftWire.decode(b) }
            case 1: b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 + rng.next() % 255)
            default: b = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            _ = try? RaftWire.decode(b)
            _ = try? Request(decoding: b)
            _ = try? ClusterState(decoding: b)
        }
    }
}
