import Raft
import Support

/// One change to the cluster state, as carried in a Raft entry.
public enum Command: Equatable, Sendable {
    /// The first command a new cluster commits: its identity.
    case initCluster(id: String)
    /// `scheme`: the bucket's own erasure scheme, used while the layout is that wide (nil: the layout's).
    case createBucket(name: String, createdMs: Int64, scheme: ErasureScheme? = nil)
    case deleteBucket(name: String)
    case putAccessKey(id: String, secret: String)
    case deleteAccessKey(id: String)
    /// Small replicated settings (and the benchmark's writes).
    case put(key: String, value: [UInt8])
    case delete(key: String)
    /// Operator changes kept for the next `applyLayout` (weights merge per node).
    case stageLayout(LayoutStage)
    case revertLayout
    /// A new layout version (`Layout.next` of the current one) and the staged changes it took in.
    case applyLayout(Layout, consumed: LayoutStage)
    /// Data has moved to `version`: older versions are no longer consulted.
    case finishMigration(version: UInt64)
    /// A join token (only its secret's hash); expired tokens a day past their end are dropped.
    case createToken(TokenRecord)
    case revokeToken(id: String)
    /// A node enrols with a token: checked and counted here, in log order, so two nodes racing
    /// for a single-use token get one `ok` and one `tokenUsedUp`. The same node (name and key)
    /// asking again with the same token, after a lost answer, gets `ok` and uses nothing more.
    case admitNode(tokenID: String, secretHash: [UInt8], node: String, publicKey: [UInt8], nowMs: Int64)
    /// A node with a credential it did not get through a token: the founding node.
    case registerNode(NodeRecord)
    /// `stacks node remove`: the node's credential is refused from now on (its name may be
    /// admitted again, with another key).
    case removeNode(name: String, atMs: Int64)
    /// A new gossip key for every member, after a removal (the removed node knew the old one).
    /// Committed only once the removal is applied, so it never reaches the removed node.
    case rotateGossipKey([UInt8])
    /// An S3 user's access key (`stacks key create`), its secret sealed under the cluster's
    /// secrets key.
    case putUser(UserKey)
    case deleteUser(id: String)
    /// A bucket created by an S3 user, who owns it.
    case createOwnedBucket(name: String, createdMs: Int64, scheme: ErasureScheme?, owner: String)
    /// A new secrets key (`generation` one past the state's) with every user's key sealed under
    /// it (`stacks node remove`: the removed node knew the old one). Refused as `stale` unless
    /// it names exactly the users the state holds, so no secret is left sealed under the old key.
    case rotateSecrets(key: [UInt8], generation: UInt32, users: [UserKey])
    /// `stacks keyring install|use|remove` on a cluster with credentials: the whole ring every
    /// member holds from now on and the key it seals with (`version` one past the state's, else
    /// `stale`). Carried by the log, never by a gossip message.
    case setGossipKeyring(version: UInt32, primary: [UInt8], keys: [[UInt8]])
}

/// An S3 access key of the cluster's users. `admin`: every right on every bucket (the founding
/// node's key); otherwise rights on the buckets it owns, or with `bucket` set, only `allow` on
/// that bucket (and it creates none).
public struct UserKey: Equatable, Sendable {
    public var id: String
    public var name: String
    /// The secret sealed under the secrets key every member holds (never in the clear here).
    public var sealedSecret: [UInt8]
    public var createdMs: Int64
    public var admin: Bool
    public var bucket: String?
    public var allowRead: Bool
    public var allowWrite: Bool
    /// The secrets key generation `sealedSecret` (and `previousSealed`) are sealed under.
    public var keyGeneration: UInt32 = 0
    /// After `stacks node remove --rotate-keys`: the secret clients held before, still accepted
    /// until `previousUntilMs` (wall clock).
    public var previousSealed: [UInt8]?
    public var previousUntilMs: Int64 = 0

    public init(
        id: String, name: String, sealedSecret: [UInt8], createdMs: Int64, admin: Bool = false, bucket: String? = nil, allowRead: Bool = true,
        allowWrite: Bool = true, keyGeneration: UInt32 = 0
    ) {
        self.id = id; self.name = name; self.sealedSecret = sealedSecret; self.createdMs = createdMs; self.admin = admin
        self.bucket = bucket; self.allowRead = allowRead; self.allowWrite = allowWrite; self.keyGeneration = keyGeneration
    }

    /// id · name · sealed · created · flags (1 admin, 2 read, 4 write, 8 rotated) · bucket, and
    /// with flag 8: generation · previous sealed ("" for none) · its end.
    func encode(_ w: inout BinaryWriter) {
        let rotated = keyGeneration != 0 || previousSealed != nil
        w.string(id); w.string(name); w.blob(sealedSecret); w.i64(createdMs)
        w.u8((admin ? 1 : 0) | (allowRead ? 2 : 0) | (allowWrite ? 4 : 0) | (rotated ? 8 : 0))
        w.string(bucket ?? "")
        if rotated { w.u32(keyGeneration); w.blob(previousSealed ?? []); w.i64(previousUntilMs) }
    }

    init(reading r: inout BinaryReader) throws(DecodeError) {
        id = try r.string(max: 128); name = try r.string(max: 256); sealedSecret = try r.blob(max: 256); createdMs = try r.i64()
        let flags = try r.u8()
        (admin, allowRead, allowWrite) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0)
        let b = try r.string(max: 256)
        bucket = b.isEmpty ? nil : b
        if flags & 8 != 0 {
            keyGeneration = try r.u32()
            let p = try r.blob(max: 256)
            previousSealed = p.isEmpty ? nil : p
            previousUntilMs = try r.i64()
        }
    }
}

/// What applying a command did; every replica computes the same one.
public enum Outcome: UInt8, Equatable, Sendable {
    case ok = 0
    case bucketExists = 1
    case noSuchBucket = 2
    case noSuchKey = 3
    case alreadyInitialized = 4
    case noSuchNode = 5
    /// The layout changed since the proposer computed its new version: compute again.
    case staleLayout = 6
    case invalidLayout = 7
    case noSuchToken = 8
    case tokenExpired = 9
    case tokenUsedUp = 10
    case tokenRevoked = 11
    /// The secret does not match the token's hash.
    case wrongSecret = 12
    /// Another node (another key) already has that name.
    case nodeExists = 13
    case tokenExists = 14
    /// Built on a state that has moved on (a secrets key rotation, or a user sealed under the
    /// key before it): read again and retry.
    case stale = 15
}

/// A join token as the cluster keeps it: never the secret, only its keyed hash.
public struct TokenRecord: Equatable, Sendable {
    public var id: String
    public var secretHash: [UInt8]
    public var role: String
    public var createdMs: Int64
    public var expiresMs: Int64
    public var usesLeft: UInt32
    public var revoked: Bool

    public init(id: String, secretHash: [UInt8], role: String, createdMs: Int64, expiresMs: Int64, usesLeft: UInt32, revoked: Bool = false) {
        self.id = id; self.secretHash = secretHash; self.role = role
        self.createdMs = createdMs; self.expiresMs = expiresMs; self.usesLeft = usesLeft; self.revoked = revoked
    }

    func encode(_ w: inout BinaryWriter) {
        w.string(id); w.blob(secretHash); w.string(role); w.i64(createdMs); w.i64(expiresMs); w.u32(usesLeft); w.u8(revoked ? 1 : 0)
    }

    init(reading r: inout BinaryReader) throws(DecodeError) {
        id = try r.string(max: 64); secretHash = try r.blob(max: 64); role = try r.string(max: 16)
        createdMs = try r.i64(); expiresMs = try r.i64(); usesLeft = try r.u32(); revoked = try r.u8() != 0
    }
}

/// A node the cluster admitted: its public key, role, and the token it came with ("" for the founder).
public struct NodeRecord: Equatable, Sendable {
    public var name: String
    public var publicKey: [UInt8]
    public var role: String
    public var joinedMs: Int64
    public var tokenID: String
    /// When `stacks node remove` removed it; nil while it is a member.
    public var removedMs: Int64?

    public init(name: String, publicKey: [UInt8], role: String, joinedMs: Int64, tokenID: String, removedMs: Int64? = nil) {
        self.name = name; self.publicKey = publicKey; self.role = role; self.joinedMs = joinedMs; self.tokenID = tokenID; self.removedMs = removedMs
    }

    func encode(_ w: inout BinaryWriter) {
        w.string(name); w.blob(publicKey); w.string(role); w.i64(joinedMs); w.string(tokenID)
        if let r = removedMs { w.u8(1); w.i64(r) } else { w.u8(0) }
    }

    init(reading r: inout BinaryReader) throws(DecodeError) {
        name = try r.string(max: 256); publicKey = try r.blob(max: 64); role = try r.string(max: 16)
        joinedMs = try r.i64(); tokenID = try r.string(max: 64)
        removedMs = try r.u8() == 0 ? nil : try r.i64()
    }
}

/// A command with the identity the client gave it, so a retried request (after a leader died
/// between commit and reply) is applied once and answered with the first outcome (Raft thesis §6.3).
public struct Request: Equatable, Sendable {
    public var id: RequestID
    public var command: Command
    public init(id: RequestID, command: Command) { self.id = id; self.command = command }
}

/// 16 random bytes chosen by whoever first accepted the request.
public struct RequestID: Hashable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64
    public init(hi: UInt64, lo: UInt64) { self.hi = hi; self.lo = lo }
    public var description: String { hex(hi) + hex(lo) }
    public init?(hex s: String) {
        guard s.utf8.count == 32, let h = UInt64(s.prefix(16), radix: 16), let l = UInt64(s.suffix(16), radix: 16) else { return nil }
        hi = h; lo = l
    }
    private func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

public struct BucketRecord: Equatable, Sendable {
    public var name: String
    public var createdMs: Int64
    /// The scheme its new objects get while the layout has at least its width; nil: the layout's.
    public var scheme: ErasureScheme?
    /// The access key of the user who created it ("" for buckets from before S3 users).
    public var owner: String = ""
}

/// The replicated cluster state: applied in log order on every node, voters and learners alike.
/// Pure and deterministic: the same entries give the same state and outcomes everywhere.
public struct ClusterState: Equatable, Sendable {
    public static let formatVersion: UInt8 = 5
    /// Joins remembered for `stacks token list --joins`, the newest kept.
    public static let joinsKept = 1000
    /// Expired tokens stay listed this long after their end.
    public static let expiredTokensKeptMs: Int64 = 86_400_000
    /// Layout versions still consulted while data migrates (the newest first); past it the oldest
    /// is dropped, and the shards it placed are found by the nodes' own scans.
    public static let migratingKept = 4
    /// How many recent request ids are remembered for de-duplication.
    public static let rememberedRequests = 65_536

    public private(set) var clusterID = ""
    public private(set) var buckets: [String: BucketRecord] = [:]
    public private(set) var accessKeys: [String: String] = [:]
    public private(set) var values: [String: [UInt8]] = [:]
    public private(set) var layout = Layout()
    /// Earlier layout versions whose data has not finished moving, newest first.
    public private(set) var migrating: [Layout] = []
    public private(set) var staged = LayoutStage()
    public private(set) var tokens: [String: TokenRecord] = [:]
    public private(set) var nodes: [String: NodeRecord] = [:]
    /// Every admission by token, oldest first (`joinsKept` at most).
    public private(set) var joins: [NodeRecord] = []
    /// The gossip key the last rotation or `keyring use` chose (nil: never set); members make it
    /// their primary.
    public private(set) var gossipKey: [UInt8]?
    /// Every gossip key members hold (the primary among them; empty: only the primary), and how
    /// many keyring changes there were.
    public private(set) var gossipKeys: [[UInt8]] = []
    public private(set) var gossipKeyringVersion: UInt32 = 0
    /// The most keys a ring holds.
    public static let maxGossipKeys = 16
    /// S3 users' access keys by id.
    public private(set) var users: [String: UserKey] = [:]
    /// The key users' secrets are sealed under, once a removal rotated it (nil: the one every
    /// member was given at join), and how many rotations there were.
    public private(set) var secretsKey: [UInt8]?
    public private(set) var secretsGeneration: UInt32 = 0

    /// Names of nodes `stacks node remove` removed (not admitted again since).
    public var removedNodes: Set<String> { Set(nodes.values.filter { $0.removedMs != nil }.map(\.name)) }
    /// Commands applied (duplicates excluded): lets tests prove nothing was applied twice.
    public private(set) var appliedCommands: UInt64 = 0
    /// Recent request ids with their outcomes, oldest first.
    private var recent: [RequestID: Outcome] = [:]
    private var recentOrder: [RequestID] = []
    private var recentHead = 0

    public init() {}

    /// The outcome a request already applied had, if it is still remembered.
    public func outcome(of id: RequestID) -> Outcome? { recent[id] }

    /// Applies one request. A duplicate is not applied again: it returns the first outcome.
    @discardableResult
    public mutating func apply(_ r: Request) -> (outcome: Outcome, duplicate: Bool) {
        if let o = recent[r.id] { return (o, true) }
        let o = apply(r.command)
        appliedCommands += 1
        remember(r.id, o)
        return (o, false)
    }

    private mutating func remember(_ id: RequestID, _ o: Outcome) {
        recent[id] = o
        if recentOrder.count < Self.rememberedRequests {
            recentOrder.append(id)
        } else {
            recent[recentOrder[recentHead]] = nil
            recentOrder[recentHead] = id
            recentHead = (recentHead + 1) % Self.rememberedRequests
        }
    }

    private mutating func apply(_ c: Command) -> Outcome {
        switch c {
        case .initCluster(let id):
            guard clusterID.isEmpty else { return .alreadyInitialized }
            clusterID = id
        case .createBucket(let name, let ms, let scheme):
            guard buckets[name] == nil else { return .bucketExists }
            buckets[name] = BucketRecord(name: name, createdMs: ms, scheme: scheme)
        case .deleteBucket(let name):
            guard buckets.removeValue(forKey: name) != nil else { return .noSuchBucket }
        case .putAccessKey(let id, let secret):
            accessKeys[id] = secret
        case .deleteAccessKey(let id):
            guard accessKeys.removeValue(forKey: id) != nil else { return .noSuchKey }
        case .put(let key, let value):
            values[key] = value
        case .delete(let key):
            guard values.removeValue(forKey: key) != nil else { return .noSuchKey }
        case .stageLayout(let change):
            guard change.weights.keys.allSatisfy({ layout.member($0) != nil }) else { return .noSuchNode }
            guard change.weights.values.allSatisfy({ $0 <= Layout.maxWeight }) else { return .invalidLayout }
            staged.weights.merge(change.weights) { $1 }
            if let s = change.scheme { staged.scheme = s }
        case .revertLayout:
            staged = LayoutStage()
        case .applyLayout(let new, let consumed):
            guard new.version == layout.version + 1 else { return .staleLayout }
            guard new.problem() == nil else { return .invalidLayout }
            // The version before stays consulted until data has moved, unless nothing moves.
            let moves = (0..<max(layout.partitions, new.partitions)).contains { layout.holders(of: $0) != new.holders(of: $0) }
            if layout.version > 0 && moves { migrating = Array(([layout] + migrating).prefix(Self.migratingKept)) }
            layout = new
            for (n, w) in consumed.weights where staged.weights[n] == w { staged.weights[n] = nil }
            staged.weights = staged.weights.filter { layout.member($0.key) != nil }
            if consumed.scheme != nil && staged.scheme == consumed.scheme { staged.scheme = nil }
        case .finishMigration(let version):
            migrating.removeAll { $0.version < version }
        case .createToken(let t):
            guard tokens[t.id] == nil else { return .tokenExists }
            tokens = tokens.filter { $0.value.expiresMs > t.createdMs - Self.expiredTokensKeptMs }
            tokens[t.id] = t
        case .revokeToken(let id):
            guard tokens[id] != nil else { return .noSuchToken }
            tokens[id]!.revoked = true
        case .admitNode(let id, let hash, let node, let key, let now):
            return admit(tokenID: id, secretHash: hash, node: node, publicKey: key, nowMs: now)
        case .registerNode(let n):
            // Never over another key, and never revives a removed node.
            if let old = nodes[n.name], old.publicKey != n.publicKey || old.removedMs != nil { return .nodeExists }
            nodes[n.name] = n
        case .removeNode(let name, let at):
            guard nodes[name] != nil, nodes[name]!.removedMs == nil else { return .noSuchNode }
            nodes[name]!.removedMs = at
        case .rotateGossipKey(let key):
            guard key.count == 32 else { return .invalidLayout }
            gossipKey = key
            gossipKeys = [key]
            gossipKeyringVersion &+= 1
        case .setGossipKeyring(let version, let primary, let keys):
            guard version == gossipKeyringVersion &+ 1 else { return .stale }
            guard (1...Self.maxGossipKeys).contains(keys.count), keys.allSatisfy({ $0.count == 32 }), keys.contains(primary), Set(keys).count == keys.count
            else { return .invalidLayout }
            (gossipKey, gossipKeys, gossipKeyringVersion) = (primary, keys, version)
        case .putUser(let u):
            guard users[u.id] == nil, accessKeys[u.id] == nil else { return .tokenExists }
            guard u.keyGeneration == secretsGeneration else { return .stale }
            users[u.id] = u
        case .deleteUser(let id):
            guard users.removeValue(forKey: id) != nil else { return .noSuchKey }
        case .createOwnedBucket(let name, let ms, let scheme, let owner):
            guard buckets[name] == nil else { return .bucketExists }
            buckets[name] = BucketRecord(name: name, createdMs: ms, scheme: scheme, owner: owner)
        case .rotateSecrets(let key, let generation, let rotated):
            guard key.count == 32, secretsGeneration < .max, generation == secretsGeneration + 1,
                rotated.allSatisfy({ $0.keyGeneration == generation }), Set(rotated.map(\.id)) == Set(users.keys), rotated.count == users.count
            else { return .stale }
            for u in rotated { users[u.id] = u }
            secretsKey = key
            secretsGeneration = generation
        }
        return .ok
    }

    /// What `admitNode` with these fields would answer now, changing nothing: a member checks a
    /// join on its replica before proposing it, so a made-up or spent token never reaches the log.
    public func admission(tokenID: String, secretHash: [UInt8], node: String, publicKey: [UInt8], nowMs: Int64) -> Outcome {
        guard let t = tokens[tokenID] else { return .noSuchToken }
        guard constantTimeEqual(secretHash, t.secretHash) else { return .wrongSecret }
        if let n = nodes[node], n.removedMs == nil {
            // The same enrolment again (its answer was lost): nothing more is used.
            return n.publicKey == publicKey && n.tokenID == tokenID ? .ok : .nodeExists
        }
        // A removed node's name may come back only with a new key.
        if let n = nodes[node], n.publicKey == publicKey { return .nodeExists }
        guard !t.revoked else { return .tokenRevoked }
        guard nowMs < t.expiresMs else { return .tokenExpired }
        guard t.usesLeft > 0 else { return .tokenUsedUp }
        return .ok
    }

    private mutating func admit(tokenID: String, secretHash: [UInt8], node: String, publicKey: [UInt8], nowMs: Int64) -> Outcome {
        let o = admission(tokenID: tokenID, secretHash: secretHash, node: node, publicKey: publicKey, nowMs: nowMs)
        guard o == .ok else { return o }
        if let n = nodes[node], n.removedMs == nil { return .ok }  // the same enrolment again
        guard var t = tokens[tokenID] else { return .noSuchToken }
        t.usesLeft -= 1
        tokens[tokenID] = t
        let record = NodeRecord(name: node, publicKey: publicKey, role: t.role, joinedMs: nowMs, tokenID: tokenID)
        nodes[node] = record
        joins.append(record)
        if joins.count > Self.joinsKept { joins.removeFirst(joins.count - Self.joinsKept) }
        return .ok
    }

    /// Compares two hashes in time that depends only on their length.
    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in a.indices { d |= a[i] ^ b[i] }
        return d == 0
    }

    // MARK: Encoding

    /// The whole state, for snapshots: version · cluster id · buckets (name, created, 0 for the
    /// layout's scheme or 1 · k · m) · keys · values · layout ·
    /// migrating layouts · staged changes · tokens · nodes · joins · counters · recent ids.
    public func encoded() -> [UInt8] {
        var w = BinaryWriter()
        w.u8(Self.formatVersion)
        w.string(clusterID)
        w.u32(UInt32(buckets.count))
        for b in buckets.values.sorted(by: { $0.name < $1.name }) {
            w.string(b.name); w.i64(b.createdMs)
            if let s = b.scheme { w.u8(1); s.write(to: &w) } else { w.u8(0) }
        }
        w.u32(UInt32(accessKeys.count))
        for (k, s) in accessKeys.sorted(by: { $0.key < $1.key }) { w.string(k); w.string(s) }
        w.u32(UInt32(values.count))
        for (k, v) in values.sorted(by: { $0.key < $1.key }) { w.string(k); w.blob(v) }
        layout.encode(&w)
        w.u8(UInt8(migrating.count))
        for l in migrating { l.encode(&w) }
        staged.encode(&w)
        w.u32(UInt32(tokens.count))
        for t in tokens.values.sorted(by: { $0.id < $1.id }) { t.encode(&w) }
        w.u32(UInt32(nodes.count))
        for n in nodes.values.sorted(by: { $0.name < $1.name }) { n.encode(&w) }
        w.u32(UInt32(joins.count))
        for j in joins { j.encode(&w) }
        if let k = gossipKey { w.u8(1); w.blob(k) } else { w.u8(0) }
        w.u32(UInt32(users.count))
        for u in users.values.sorted(by: { $0.id < $1.id }) { u.encode(&w) }
        w.u32(UInt32(buckets.count))
        for b in buckets.values.sorted(by: { $0.name < $1.name }) { w.string(b.owner) }
        if let k = secretsKey { w.u8(1); w.blob(k) } else { w.u8(0) }
        w.u32(secretsGeneration)
        w.u32(gossipKeyringVersion)
        w.u8(UInt8(gossipKeys.count))
        for k in gossipKeys { w.blob(k) }
        w.u64(appliedCommands)
        // Oldest first, so a restored state forgets in the same order.
        let ordered = Array(recentOrder[recentHead...]) + Array(recentOrder[..<recentHead])
        w.u32(UInt32(ordered.count))
        for id in ordered { w.u64(id.hi); w.u64(id.lo); w.u8(recent[id]!.rawValue) }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        let version = try r.u8()
        guard (1...Self.formatVersion).contains(version) else { throw DecodeError("unknown cluster state version") }
        clusterID = try r.string()
        for _ in 0..<(try r.u32()) {
            let n = try r.string(), ms = try r.i64()
            // Version 3 added each bucket's own scheme.
            var scheme: ErasureScheme?
            switch version >= 3 ? try r.u8() : 0 {
            case 0: scheme = nil
            case 1: scheme = try ErasureScheme(reading: &r, what: "bucket")
            default: throw DecodeError("unknown bucket scheme tag")
            }
            buckets[n] = BucketRecord(name: n, createdMs: ms, scheme: scheme)
        }
        for _ in 0..<(try r.u32()) { let k = try r.string(); accessKeys[k] = try r.string() }
        for _ in 0..<(try r.u32()) { let k = try r.string(); values[k] = try r.blob() }
        if version >= 2 {  // version 1 knew no layout
            layout = try Layout(reading: &r)
            let n = try r.u8()
            guard n <= Self.migratingKept else { throw DecodeError("\(n) migrating layouts") }
            for _ in 0..<n { migrating.append(try Layout(reading: &r)) }
            staged = try LayoutStage(reading: &r)
        }
        if version >= 4 {  // tokens and admitted nodes came with join tokens
            for _ in 0..<(try r.count(max: r.remaining)) { let t = try TokenRecord(reading: &r); tokens[t.id] = t }
            for _ in 0..<(try r.count(max: r.remaining)) { let n = try NodeRecord(reading: &r); nodes[n.name] = n }
            let n = try r.count(max: Self.joinsKept)
            for _ in 0..<n { joins.append(try NodeRecord(reading: &r)) }
            gossipKey = try r.u8() == 0 ? nil : try r.blob(max: 32)
            for _ in 0..<(try r.count(max: r.remaining)) { let u = try UserKey(reading: &r); users[u.id] = u }
            // Each bucket's owner, in name order.
            guard try r.count(max: r.remaining) == buckets.count else { throw DecodeError("bucket owners do not match the buckets") }
            for n in buckets.keys.sorted() { buckets[n]!.owner = try r.string(max: 128) }
        }
        if version >= 5 {  // the rotated secrets key
            secretsKey = try r.u8() == 0 ? nil : try r.blob(max: 32)
            secretsGeneration = try r.u32()
            gossipKeyringVersion = try r.u32()
            let n = try r.u8()
            guard n <= Self.maxGossipKeys else { throw DecodeError("\(n) gossip keys") }
            for _ in 0..<n { gossipKeys.append(try r.blob(max: 32)) }
        }
        appliedCommands = try r.u64()
        let n = try r.u32()
        guard n <= Self.rememberedRequests else { throw DecodeError("\(n) remembered requests") }
        for _ in 0..<n {
            let id = RequestID(hi: try r.u64(), lo: try r.u64())
            guard let o = Outcome(rawValue: try r.u8()) else { throw DecodeError("unknown outcome") }
            remember(id, o)
        }
        try r.expectEnd()
    }
}

extension Request {
    static let version: UInt8 = 1

    /// version · request id · op · fields
    public var encoded: [UInt8] {
        var w = BinaryWriter()
        w.u8(Self.version)
        w.u64(id.hi); w.u64(id.lo)
        switch command {
        case .initCluster(let id): w.u8(1); w.string(id)
        case .createBucket(let n, let ms, nil): w.u8(2); w.string(n); w.i64(ms)
        case .createBucket(let n, let ms, let s?): w.u8(12); w.string(n); w.i64(ms); s.write(to: &w)
        case .deleteBucket(let n): w.u8(3); w.string(n)
        case .putAccessKey(let id, let s): w.u8(4); w.string(id); w.string(s)
        case .deleteAccessKey(let id): w.u8(5); w.string(id)
        case .put(let k, let v): w.u8(6); w.string(k); w.blob(v)
        case .delete(let k): w.u8(7); w.string(k)
        case .stageLayout(let c): w.u8(8); c.encode(&w)
        case .revertLayout: w.u8(9)
        case .applyLayout(let l, let c): w.u8(10); l.encode(&w); c.encode(&w)
        case .finishMigration(let v): w.u8(11); w.u64(v)
        case .createToken(let t): w.u8(13); t.encode(&w)
        case .revokeToken(let id): w.u8(14); w.string(id)
        case .admitNode(let id, let h, let n, let k, let now): w.u8(15); w.string(id); w.blob(h); w.string(n); w.blob(k); w.i64(now)
        case .registerNode(let n): w.u8(16); n.encode(&w)
        case .removeNode(let n, let at): w.u8(17); w.string(n); w.i64(at)
        case .rotateGossipKey(let k): w.u8(18); w.blob(k)
        case .putUser(let u): w.u8(19); u.encode(&w)
        case .rotateSecrets(let k, let g, let us):
            w.u8(22); w.blob(k); w.u32(g); w.u32(UInt32(us.count))
            for u in us { u.encode(&w) }
        case .setGossipKeyring(let v, let p, let ks):
            w.u8(23); w.u32(v); w.blob(p); w.u8(UInt8(clamping: ks.count))
            for k in ks.prefix(255) { w.blob(k) }
        case .deleteUser(let id): w.u8(20); w.string(id)
        case .createOwnedBucket(let n, let ms, let s, let owner):
            w.u8(21); w.string(n); w.i64(ms); w.string(owner)
            if let s { w.u8(1); s.write(to: &w) } else { w.u8(0) }
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = BinaryReader(bytes)
        guard try r.u8() == Self.version else { throw DecodeError("unknown command version") }
        id = RequestID(hi: try r.u64(), lo: try r.u64())
        switch try r.u8() {
        case 1: command = .initCluster(id: try r.string())
        case 2: command = .createBucket(name: try r.string(), createdMs: try r.i64())
        case 3: command = .deleteBucket(name: try r.string())
        case 4: command = .putAccessKey(id: try r.string(), secret: try r.string())
        case 5: command = .deleteAccessKey(id: try r.string())
        case 6: command = .put(key: try r.string(), value: try r.blob())
        case 7: command = .delete(key: try r.string())
        case 8: command = .stageLayout(try LayoutStage(reading: &r))
        case 9: command = .revertLayout
        case 10: command = .applyLayout(try Layout(reading: &r), consumed: try LayoutStage(reading: &r))
        case 11: command = .finishMigration(version: try r.u64())
        case 12: command = .createBucket(name: try r.string(), createdMs: try r.i64(), scheme: try ErasureScheme(reading: &r, what: "bucket"))
        case 13: command = .createToken(try TokenRecord(reading: &r))
        case 14: command = .revokeToken(id: try r.string(max: 64))
        case 15:
            command = .admitNode(
                tokenID: try r.string(max: 64), secretHash: try r.blob(max: 64), node: try r.string(max: 256), publicKey: try r.blob(max: 64),
                nowMs: try r.i64())
        case 16: command = .registerNode(try NodeRecord(reading: &r))
        case 17: command = .removeNode(name: try r.string(max: 256), atMs: try r.i64())
        case 18: command = .rotateGossipKey(try r.blob(max: 32))
        case 19: command = .putUser(try UserKey(reading: &r))
        case 20: command = .deleteUser(id: try r.string(max: 128))
        case 21:
            let (n, ms, owner) = (try r.string(), try r.i64(), try r.string(max: 128))
            let scheme = try r.u8() == 0 ? nil : try ErasureScheme(reading: &r, what: "bucket")
            command = .createOwnedBucket(name: n, createdMs: ms, scheme: scheme, owner: owner)
        case 22:
            let (k, g) = (try r.blob(max: 32), try r.u32())
            var us: [UserKey] = []
            for _ in 0..<(try r.count(max: r.remaining)) { us.append(try UserKey(reading: &r)) }
            command = .rotateSecrets(key: k, generation: g, users: us)
        case 23:
            let (v, p) = (try r.u32(), try r.blob(max: 32))
            var ks: [[UInt8]] = []
            for _ in 0..<(try r.u8()) { ks.append(try r.blob(max: 32)) }
            command = .setGossipKeyring(version: v, primary: p, keys: ks)
        default: throw DecodeError("unknown command")
        }
        try r.expectEnd()
    }
}
