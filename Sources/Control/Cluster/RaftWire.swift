import Raft
import Support

/// What nodes say to each other over the Raft transport.
public enum Frame: Equatable, Sendable {
    case raft(RaftMessage)
    /// A follower hands a client's request to the leader, which proposes it. No reply: the
    /// follower sees the request applied in its own log (requests are de-duplicated by id).
    case forward([UInt8])
    /// A follower asks the leader for a ReadIndex; the reply names the index to wait for.
    case readIndex(id: UInt64)
    case readIndexReply(id: UInt64, index: LogIndex?)
}

public struct AddressedFrame: Equatable, Sendable {
    public var from: String
    /// The sender's Raft address, so a peer can answer before gossip has told it where we are.
    public var fromAddress: String
    /// The sender's cluster id ("" before it has one): two clusters that share a gossip key
    /// by mistake must not mix their logs.
    public var cluster: String
    public var to: String
    public var frame: Frame
    public init(from: String, fromAddress: String, cluster: String, to: String, frame: Frame) {
        self.from = from; self.fromAddress = fromAddress; self.cluster = cluster; self.to = to; self.frame = frame
    }
}

/// The versioned binary encoding of transport frames (the stream adds a length prefix and
/// seals each frame with the cluster key):
///
///     version:u8 from:string fromAddress:string cluster:string to:string kind:u8 body
public enum RaftWire {
    public static let version: UInt8 = 1
    /// Frames larger than this are refused (snapshot chunks and append batches stay far below).
    public static let maxFrameBytes = 16 << 20

    public static func encode(_ f: AddressedFrame) -> [UInt8] {
        var w = BinaryWriter()
        w.u8(version)
        w.string(f.from)
        w.string(f.fromAddress)
        w.string(f.cluster)
        w.string(f.to)
        switch f.frame {
        case .raft(let m): w.u8(1); encode(m, into: &w)
        case .forward(let r): w.u8(2); w.blob(r)
        case .readIndex(let id): w.u8(3); w.u64(id)
        case .readIndexReply(let id, let index): w.u8(4); w.u64(id); w.u8(index == nil ? 0 : 1); w.u64(index?.value ?? 0)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> AddressedFrame {
        var r = BinaryReader(bytes)
        guard try r.u8() == version else { throw DecodeError("unknown frame version") }
        let from = try r.string(max: 255), fromAddress = try r.string(max: 255), cluster = try r.string(max: 255), to = try r.string(max: 255)
        let frame: Frame
        switch try r.u8() {
        case 1: frame = .raft(try decodeMessage(&r))
        case 2: frame = .forward(try r.blob())
        case 3: frame = .readIndex(id: try r.u64())
        case 4:
            let id = try r.u64(), has = try r.u8(), i = try r.u64()
            frame = .readIndexReply(id: id, index: has == 1 ? LogIndex(i) : nil)
        default: throw DecodeError("unknown frame kind")
        }
        try r.expectEnd()
        return AddressedFrame(from: from, fromAddress: fromAddress, cluster: cluster, to: to, frame: frame)
    }

    static func encode(_ m: RaftMessage, into w: inout BinaryWriter) {
        func b(_ v: Bool) { w.u8(v ? 1 : 0) }
        switch m {
        case .preVote(let t, let li, let lt): w.u8(1); w.u64(t.value); w.u64(li.value); w.u64(lt.value)
        case .preVoteReply(let t, let g): w.u8(2); w.u64(t.value); b(g)
        case .vote(let t, let li, let lt, let tr): w.u8(3); w.u64(t.value); w.u64(li.value); w.u64(lt.value); b(tr)
        case .voteReply(let t, let g): w.u8(4); w.u64(t.value); b(g)
        case .append(let t, let pi, let pt, let entries, let c, let rs):
            w.u8(5); w.u64(t.value); w.u64(pi.value); w.u64(pt.value); w.u64(c.value); w.u64(rs)
            w.u32(UInt32(entries.count))
            for e in entries { w.u64(e.term.value); w.u64(e.index.value); w.u8(e.kind.rawValue); w.blob(e.data) }
        case .appendReply(let t, let s, let i, let rs): w.u8(6); w.u64(t.value); b(s); w.u64(i.value); w.u64(rs)
        case .timeoutNow(let t): w.u8(7); w.u64(t.value)
        case .installSnapshot(let t, let meta, let offset, let done):
            w.u8(8); w.u64(t.value); w.u64(meta.index.value); w.u64(meta.term.value)
            w.u32(UInt32(meta.voters.count)); for v in meta.voters.sorted() { w.string(v) }
            w.u32(UInt32(meta.learners.count)); for l in meta.learners.sorted() { w.string(l) }
            w.blob(meta.data); w.u64(UInt64(offset)); b(done)
        case .installSnapshotReply(let t, let i, let offset, let done): w.u8(9); w.u64(t.value); w.u64(i.value); w.u64(UInt64(offset)); b(done)
        }
    }

    static func decodeMessage(_ r: inout BinaryReader) throws(DecodeError) -> RaftMessage {
        func term() throws(DecodeError) -> Term { Term(try r.u64()) }
        func index() throws(DecodeError) -> LogIndex { LogIndex(try r.u64()) }
        func bool() throws(DecodeError) -> Bool {
            switch try r.u8() {
            case 0: return false;
            case 1: return true;
            default: throw DecodeError("bad boolean")
            }
        }
        func int() throws(DecodeError) -> Int {
            // Offsets run through a whole snapshot, which may be far larger than one frame.
            guard let v = Int(exactly: try r.u64()), v <= Snapshot.maxBytes else { throw DecodeError("offset out of range") }; return v
        }
        func count(_ limit: Int) throws(DecodeError) -> Int {
            let n = Int(try r.u32()); guard n <= limit else { throw DecodeError("count \(n) over \(limit)") }; return n
        }
        switch try r.u8() {
        case 1: return .preVote(term: try term(), lastIndex: try index(), lastTerm: try term())
        case 2: return .preVoteReply(term: try term(), granted: try bool())
        case 3: return .vote(term: try term(), lastIndex: try index(), lastTerm: try term(), transfer: try bool())
        case 4: return .voteReply(term: try term(), granted: try bool())
        case 5:
            let t = try term(), pi = try index(), pt = try term(), c = try index(), rs = try r.u64()
            var entries: [Entry] = []
            for _ in 0..<(try count(1 << 16)) {
                let et = try term(), ei = try index()
                guard let kind = Entry.Kind(rawValue: try r.u8()) else { throw DecodeError("unknown entry kind") }
                entries.append(Entry(term: et, index: ei, kind: kind, data: try r.blob()))
            }
            return .append(term: t, prevIndex: pi, prevTerm: pt, entries: entries, commit: c, readSeq: rs)
        case 6: return .appendReply(term: try term(), success: try bool(), index: try index(), readSeq: try r.u64())
        case 7: return .timeoutNow(term: try term())
        case 8:
            let t = try term(), i = try index(), st = try term()
            var voters = Set<String>(), learners = Set<String>()
            for _ in 0..<(try count(1 << 16)) { voters.insert(try r.string(max: 255)) }
            for _ in 0..<(try count(1 << 16)) { learners.insert(try r.string(max: 255)) }
            let data = try r.blob(), offset = try int(), done = try bool()
            return .installSnapshot(
                term: t, meta: Snapshot(index: i, term: st, voters: voters, learners: learners, data: data),
                offset: offset, done: done)
        case 9: return .installSnapshotReply(term: try term(), index: try index(), offset: try int(), done: try bool())
        default: throw DecodeError("unknown Raft message")
        }
    }
}

/// One Raft TCP connection's binding (`SessionBinding`, one way), so a sealed frame is good on
/// one connection, once, in order.
///
/// The accepting side first writes a fresh random challenge. Every plaintext the connecting
/// side seals after that is bound to it; frame 0 is the hello (`body` = "STKSHELO"), which must
/// arrive within `helloMaxBytes` sealed before the acceptor takes any larger frame. A frame
/// recorded on one connection opens on no other and not twice on its own: no replay of an old
/// access-key change once its request id has left the state machine's dedup window.
public enum RaftSession {
    public static let challengeBytes = SessionBinding.challengeBytes
    /// The largest sealed frame the acceptor reads before the hello has proved the key.
    public static let helloMaxBytes = 128
    public static let helloBody = Array("STKSHELO".utf8)

    public static func bind(challenge: [UInt8], seq: UInt64, _ body: [UInt8]) -> [UInt8] { SessionBinding.bind(challenge: challenge, seq: seq, body) }

    public static func unbind(_ plain: [UInt8], challenge: [UInt8], seq: UInt64) -> [UInt8]? { SessionBinding.unbind(plain, challenge: challenge, seq: seq) }
}
