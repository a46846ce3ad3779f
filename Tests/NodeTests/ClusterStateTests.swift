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

    /// Snapshots written before buckets had schemes (format 2) still load, every bucket on the layout's scheme.
    @Test func formatTwoSnapshotsLoad() throws {
        var s = ClusterState()
        s.apply(req(1, .initCluster(id: "abc")))
        s.apply(req(2, .createBucket(name: "photos", createdMs: 42)))
        var bucket = BinaryWriter()
        bucket.string("photos"); bucket.i64(42)
        var bytes = s.encoded()
        let at = try #require((0...(bytes.count - bucket.bytes.count)).first { Array(bytes[$0..<($0 + bucket.bytes.count)]) == bucket.bytes })
        let end = at + bucket.bytes.count
        #expect(bytes[end] == 0)
        bytes.remove(at: end)  // format 2 had no scheme byte
        bytes[0] = 2
        let old = try ClusterState(decoding: bytes)
        #expect(old == s && old.buckets["photos"]?.scheme == nil)
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
