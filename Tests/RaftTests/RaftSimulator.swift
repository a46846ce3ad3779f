@testable import Raft

/// Many Raft peers in one process over a simulated network that loses, duplicates, delays and
/// reorders messages, partitions, and crashes peers (losing everything not yet persisted), all
/// drawn from one seed. After every step it checks Raft's safety properties (§5.2–5.4).
struct RaftSimulator {
    struct Disk {
        var hardState = HardState()
        var snapshot: Snapshot?
        /// Entries after the snapshot.
        var log: [Entry] = []
    }

    /// The state machine's snapshot: every command applied so far, length-prefixed.
    static func encode(_ applied: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for d in applied { out += withUnsafeBytes(of: UInt32(d.count).littleEndian) { Array($0) } + d }
        return out
    }

    static func decode(_ b: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = [], i = 0
        while i + 4 <= b.count {
            let n = Int(b[i..<(i + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            out.append(Array(b[(i + 4)..<(i + 4 + n)])); i += 4 + n
        }
        return out
    }

    /// Rebuilds the key-value view from a list of applied commands.
    static func kv(_ applied: [[UInt8]]) -> [UInt8: UInt32] {
        var kv: [UInt8: UInt32] = [:]
        for d in applied where d.count == 10 && d[0] == 0x57 { kv[d[1]] = d[2..<6].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        return kv
    }

    struct Peer {
        var node: RaftNode?
        var disk = Disk()
        /// Commands applied by this incarnation of the peer's state machine, in order.
        var appliedData: [[UInt8]] = []
        var appliedIndex: UInt64 = 0
        /// Bumped on every start: a client of an earlier incarnation never hears back.
        var incarnation = 0
        /// The key-value state machine: writes are [0x57, key, value:u32, op:u32].
        var kv: [UInt8: UInt32] = [:]
        /// Reads confirmed by ReadIndex, waiting for their index to be applied.
        var confirmedReads: [ReadState] = []
    }

    /// A client-visible completion: a write applied by the peer that accepted it, or a read served.
    struct Completion {
        var peer: String
        var incarnation: Int
        var op: UInt64
        var value: UInt32?
        var tick: Int
    }

    struct InFlight {
        var at: Int
        var seq: Int
        var env: Envelope
    }

    var peers: [String: Peer] = [:]
    /// Every peer ever created; `initialVoters` is the configuration they all start from.
    var names: [String]
    let initialVoters: [String]
    var rng: SeededRandom
    var now = 0
    var queue: [InFlight] = []
    var seq = 0
    var lossPercent = 0
    var duplicatePercent = 0
    var maxDelay = 3
    /// Chance that a peer crashes before persisting a Ready: its unsynced writes and the
    /// messages that depended on them are lost.
    var crashBeforePersistPercent = 0
    /// Partition group per peer; nil = fully connected.
    var groups: [String: Int]? = nil
    /// Leaders seen per term (election safety).
    var leaders: [Term: String] = [:]
    /// Every committed entry ever observed, by index (leader completeness, state machine safety).
    var committed: [UInt64: Entry] = [:]
    var violations: [String] = []
    var completions: [Completion] = []
    /// Snapshots installed from a leader (InstallSnapshot completed).
    var snapshotsInstalled = 0
    /// Key of each read in flight, by read id.
    var readKeys: [UInt64: UInt8] = [:]
    let settings: RaftSettings
    let seed: UInt64

    init(size: Int, seed: UInt64, settings: RaftSettings = RaftSettings()) {
        self.seed = seed
        self.settings = settings
        rng = SeededRandom(seed: seed)
        names = (1...size).map { "r\($0)" }
        initialVoters = names
        for n in names { peers[n] = Peer() }
        for n in names { start(n) }
    }

    mutating func start(_ n: String) {
        let d = peers[n]!.disk
        peers[n]!.node = RaftNode(id: n, peers: initialVoters, hardState: d.hardState, snapshot: d.snapshot, log: d.log,
                                  settings: settings, seed: rng.next())
        peers[n]!.appliedData = d.snapshot.map { Self.decode($0.data) } ?? []
        peers[n]!.appliedIndex = d.snapshot?.index.value ?? 0
        peers[n]!.incarnation += 1
        peers[n]!.kv = Self.kv(peers[n]!.appliedData)
        peers[n]!.confirmedReads = []
    }

    mutating func crash(_ n: String) { peers[n]!.node = nil }

    /// A new, empty peer (to be added to the configuration through the leader).
    mutating func addPeer(_ n: String) {
        peers[n] = Peer()
        names.append(n)
        start(n)
    }

    /// Proposes a membership change through the leader.
    @discardableResult
    mutating func change(_ c: ConfigChange) -> Bool {
        guard let l = leader, let (_, r) = peers[l]!.node!.proposeConfigChange(c) else { return false }
        handle(l, r)
        return true
    }

    /// Members of the leader's configuration (voters and learners), or of anyone's when leaderless.
    var members: [String] {
        let n = leader.flatMap { peers[$0]!.node } ?? up.compactMap { peers[$0]!.node }.first
        guard let n else { return names }
        return names.filter { n.voters.contains($0) || n.learners.contains($0) }
    }

    var up: [String] { names.filter { peers[$0]!.node != nil } }

    /// Delivers one Ready: persist, then send, then apply (the order `Ready` documents).
    mutating func handle(_ n: String, _ r: Ready) {
        if crashBeforePersistPercent > 0 && !r.isEmpty && Int(rng.next() % 1000) < crashBeforePersistPercent {
            crash(n)
            return
        }
        if let hs = r.hardState { peers[n]!.disk.hardState = hs }
        if let s = r.snapshot {
            snapshotsInstalled += 1
            peers[n]!.disk.snapshot = s
            peers[n]!.disk.log = peers[n]!.node!.log
            peers[n]!.appliedData = Self.decode(s.data)
            peers[n]!.appliedIndex = s.index.value
            peers[n]!.kv = Self.kv(peers[n]!.appliedData)
        }
        let off = Int(peers[n]!.disk.snapshot?.index.value ?? 0)
        if let t = r.truncateAfter { peers[n]!.disk.log = Array(peers[n]!.disk.log.prefix(max(0, Int(t.value) - off))) }
        for e in r.entries where Int(e.index.value) > off {
            let i = Int(e.index.value) - off - 1
            if i < peers[n]!.disk.log.count { peers[n]!.disk.log[i] = e; peers[n]!.disk.log.removeSubrange((i + 1)...) } else {
                if i != peers[n]!.disk.log.count { violations.append("seed \(seed): \(n) persisted entry \(e.index) past its log end \(peers[n]!.disk.log.count)") }
                peers[n]!.disk.log.append(e)
            }
        }
        for env in r.messages {
            if lossPercent > 0 && Int(rng.next() % 100) < lossPercent { continue }
            if let g = groups, g[env.from] != g[env.to] { continue }
            let copies = duplicatePercent > 0 && Int(rng.next() % 100) < duplicatePercent ? 2 : 1
            for _ in 0..<copies {
                seq += 1
                queue.append(InFlight(at: now + 1 + Int(rng.next() % UInt64(maxDelay)), seq: seq, env: env))
            }
        }
        for e in r.committed {
            if e.index.value != peers[n]!.appliedIndex + 1 {
                violations.append("seed \(seed): \(n) applied \(e.index) after \(peers[n]!.appliedIndex)")
            }
            peers[n]!.appliedIndex = e.index.value
            peers[n]!.appliedData.append(e.data)
            if let seen = committed[e.index.value], seen != e {
                violations.append("seed \(seed): state machine safety: index \(e.index) committed as term \(seen.term) and as term \(e.term)")
            }
            committed[e.index.value] = e
            if e.data.count == 10 && e.data[0] == 0x57 {
                let value = e.data[2..<6].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                let op = e.data[6..<10].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                peers[n]!.kv[e.data[1]] = value
                completions.append(Completion(peer: n, incarnation: peers[n]!.incarnation, op: op, value: value, tick: now))
            }
        }
        peers[n]!.confirmedReads += r.readStates
        serveReads(n)
        check(n)
    }

    mutating func serveReads(_ n: String) {
        let applied = peers[n]!.appliedIndex
        let ready = peers[n]!.confirmedReads.filter { $0.index.value <= applied }
        peers[n]!.confirmedReads.removeAll { $0.index.value <= applied }
        for r in ready {
            guard let key = readKeys[r.id] else { continue }
            completions.append(Completion(peer: n, incarnation: peers[n]!.incarnation, op: r.id, value: peers[n]!.kv[key], tick: now))
        }
    }

    mutating func check(_ n: String) {
        guard let node = peers[n]!.node else { return }
        if node.isLeader {
            if let other = leaders[node.term], other != n {
                violations.append("seed \(seed): election safety: \(other) and \(n) both lead term \(node.term)")
            }
            if leaders[node.term] == nil {
                leaders[node.term] = n
                // Leader completeness: a new leader holds every entry committed before it.
                for (i, e) in committed where e.term < node.term && i > (node.snapshot?.index.value ?? 0) {
                    if node.term(at: LogIndex(i)) != e.term {
                        violations.append("seed \(seed): leader completeness: \(n) leads term \(node.term) without committed entry \(i)")
                    }
                }
            }
        }
    }

    /// Log matching: two logs agreeing on an index's term agree on everything before it.
    mutating func checkLogMatching() {
        // Compare the entries both still hold (snapshots cover committed, hence equal, prefixes).
        let logs = names.compactMap { peers[$0]!.node }.map { n in Dictionary(uniqueKeysWithValues: n.log.map { ($0.index.value, $0) }) }
        for a in 0..<logs.count {
            for b in (a + 1)..<logs.count {
                let shared = Set(logs[a].keys).intersection(logs[b].keys).sorted()
                guard let last = shared.last(where: { logs[a][$0]!.term == logs[b][$0]!.term }) else { continue }
                for i in shared where i <= last && logs[a][i] != logs[b][i] {
                    violations.append("seed \(seed): log matching broken at index \(i) below agreeing index \(last)")
                    return
                }
            }
        }
    }

    /// Folds what `n` has applied into a snapshot, as a shell does to bound its log.
    mutating func compact(_ n: String) {
        guard let node = peers[n]!.node else { return }
        let applied = LogIndex(peers[n]!.appliedIndex)
        if let s = peers[n]!.node!.compact(through: applied, data: Self.encode(peers[n]!.appliedData)) {
            _ = node
            peers[n]!.disk.snapshot = s
            peers[n]!.disk.log = peers[n]!.node!.log
        }
    }

    mutating func tickAll() {
        for n in up { let r = peers[n]!.node!.tick(); handle(n, r) }
    }

    /// Advances one tick: deliver messages due, then tick every live peer.
    mutating func step() {
        now += 1
        // Deliver in (time, send order); reordering comes from random delays.
        queue.sort { ($0.at, $0.seq) < ($1.at, $1.seq) }
        while let first = queue.first, first.at <= now {
            queue.removeFirst()
            guard peers[first.env.to]!.node != nil else { continue }
            let r = peers[first.env.to]!.node!.step(first.env)
            handle(first.env.to, r)
        }
        tickAll()
    }

    /// Proposes through the current leader, if any; returns whether a leader took it.
    @discardableResult
    mutating func propose(_ data: [UInt8]) -> Bool {
        for n in up where peers[n]!.node!.isLeader {
            if let (_, r) = peers[n]!.node!.propose(data) { handle(n, r); return true }
        }
        return false
    }

    var leader: String? { up.first { peers[$0]!.node!.isLeader } }
}
