import Simulation

@testable import Raft

/// Many Raft peers in one process over the simulation kit's network (it loses, duplicates, delays
/// and reorders messages, and partitions), crashing peers before a Ready is durable (losing it,
/// or tearing it: any prefix of its records survives, as RaftLog's replay keeps every intact
/// record of a torn last batch), all drawn from one seed. After every step it checks Raft's
/// safety properties (§5.2–5.4).
struct RaftSimulator {
    struct Disk {
        var hardState = HardState()
        var snapshot: Snapshot?
        /// Entries after the snapshot.
        var log: [Entry] = []

        /// Writes a Ready's log records in RaftLog's order: the truncation, then each entry
        /// (replacing what it overlaps). Returns the first entry that would land past the log's
        /// end, which is not written, nor is anything after it.
        mutating func write(truncateAfter t: LogIndex?, entries: some Sequence<Entry>) -> Entry? {
            let off = Int(snapshot?.index.value ?? 0)
            if let t { log = Array(log.prefix(max(0, Int(t.value) - off))) }
            for e in entries where Int(e.index.value) > off {
                let i = Int(e.index.value) - off - 1
                guard i <= log.count else { return e }
                log.removeSubrange(i...)
                log.append(e)
            }
            return nil
        }
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

    var peers: [String: Peer] = [:]
    /// Every peer ever created; `initialVoters` is the configuration they all start from.
    var names: [String]
    let initialVoters: [String]
    var rng: SeededRandom
    var now = 0
    /// One tick is a millisecond of the network's time.
    var net = SimNetwork<Envelope>()
    var lossPercent = 0
    var duplicatePercent = 0
    /// Delivery takes 1 to `maxDelay` ticks.
    var maxDelay = 3
    /// Chance (per mille of Readies) that a peer crashes before its Ready is durable: the
    /// messages that depended on it are lost, and so is the Ready, or some prefix of its records.
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
    /// Readies a crash left partly durable.
    var tornReadies = 0
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
        peers[n]!.node = RaftNode(
            id: n, peers: initialVoters, hardState: d.hardState, snapshot: d.snapshot, log: d.log,
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
            tear(n, r)
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
        if let e = peers[n]!.disk.write(truncateAfter: r.truncateAfter, entries: r.entries) {
            violations.append("seed \(seed): \(n) persisted entry \(e.index) past its log end \(peers[n]!.disk.log.count)")
        }
        configureNetwork()
        for env in r.messages {
            net.send(env, from: endpoint(env.from), to: endpoint(env.to), now: Instant(nanoseconds: Int64(now) * Self.tick), rng: &rng)
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

    static let tick: Int64 = 1_000_000

    /// The knobs above, applied to the network (tests set them between steps).
    mutating func configureNetwork() {
        net.lossRate = Double(lossPercent) / 100
        net.duplicateRate = Double(duplicatePercent) / 100
        // Delivered at the first tick at or after (0, maxDelay] ticks: 1 to maxDelay ticks later.
        net.delayMin = Span(nanoseconds: 1)
        net.delayMax = Span(nanoseconds: Self.tick * Int64(maxDelay) + 1)
        net.partition(groups.map { g in endpoints.map { g[$0] ?? 0 } })
    }

    /// Network endpoint numbers, given out by name as peers appear (a configuration may name a
    /// peer before it is started).
    var endpoints: [String] = []
    mutating func endpoint(_ name: String) -> Int {
        if let i = endpoints.firstIndex(of: name) { return i }
        endpoints.append(name)
        return endpoints.count - 1
    }

    /// A crash while a Ready's records were being written: a random prefix of them is durable
    /// (truncation, then entries in order, then the hard state), the rest is lost.
    mutating func tear(_ n: String, _ r: Ready) {
        var records = (r.truncateAfter == nil ? 0 : 1) + r.entries.count + (r.hardState == nil ? 0 : 1)
        records = rng.below(records + 1)
        guard records > 0, r.snapshot == nil else { return }
        if r.truncateAfter != nil { records -= 1 }
        _ = peers[n]!.disk.write(truncateAfter: r.truncateAfter, entries: r.entries.prefix(records))
        if records > r.entries.count, let hs = r.hardState { peers[n]!.disk.hardState = hs }
        tornReadies += 1
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
        configureNetwork()
        while let d = net.next(dueBy: Instant(nanoseconds: Int64(now) * Self.tick)) {
            guard peers[d.message.to]?.node != nil else { continue }
            let r = peers[d.message.to]!.node!.step(d.message)
            handle(d.message.to, r)
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
