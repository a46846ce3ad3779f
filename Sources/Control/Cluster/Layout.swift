import Placement
import Support

/// A Reed-Solomon scheme: k data shards and m parity shards; any k of the k+m rebuild an object.
public struct ErasureScheme: Hashable, Sendable, CustomStringConvertible {
    public var k: Int
    public var m: Int
    public init(k: Int, m: Int) { self.k = k; self.m = m }
    public var width: Int { k + m }
    public var description: String { "\(k)+\(m)" }

    /// 1 ≤ K ≤ 32, 0 ≤ M ≤ 16 and M ≤ K (more parity than data is mirroring, done better by 1+M).
    public var isValid: Bool { (1...32).contains(k) && (0...16).contains(m) && (m <= k || k == 1) }

    /// Parses a valid "K+M".
    public init?(parsing s: String) {
        let parts = s.split(separator: "+", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let m = Int(parts[1]) else { return nil }
        self.k = k; self.m = m
        guard isValid else { return nil }
    }

    /// K and M as two bytes, as `init(reading:what:)` reads them.
    public func write(to w: inout BinaryWriter) { w.u8(UInt8(k)); w.u8(UInt8(m)) }

    /// A scheme read from disk or a peer: refused unless valid.
    public init(reading r: inout BinaryReader, what: String) throws(DecodeError) {
        k = Int(try r.u8()); m = Int(try r.u8())
        guard isValid else { throw DecodeError("\(what) scheme \(k)+\(m) out of range") }
    }

    /// What a cluster of `nodes` storage nodes gets when no scheme is asked for: the most parity
    /// that still leaves at least as many data shards (so storage overhead stays at or below 2×,
    /// as MinIO's default parity is at most half a set), every shard on its own node:
    ///
    ///     nodes   1    2    3    4    5    6+
    ///     scheme  1+0  1+1  2+1  2+2  3+2  4+2
    ///     losses  0    1    1    2    2    2     (nodes that may be lost at once)
    ///     space   1×   2×   1.5× 2×   1.67× 1.5×
    ///
    /// Two nodes mirror (1+1): a 1+0 copy could not survive a loss. Four take 2+2, not 3+1, to
    /// survive two losses at the same 2× a mirror costs; six and more keep 4+2 (DESIGN.md's
    /// default: two losses at 1.5×); wider codes are for operators to choose.
    public static func automatic(nodes: Int) -> ErasureScheme {
        switch nodes {
        case ...1: ErasureScheme(k: 1, m: 0)
        case 2: ErasureScheme(k: 1, m: 1)
        case 3: ErasureScheme(k: 2, m: 1)
        case 4: ErasureScheme(k: 2, m: 2)
        case 5: ErasureScheme(k: 3, m: 2)
        default: ErasureScheme(k: 4, m: 2)
        }
    }
}

/// The scheme an operator asked for: chosen by cluster size, or fixed.
public enum SchemeRequest: Hashable, Sendable, CustomStringConvertible {
    case automatic
    case fixed(ErasureScheme)
    /// What `init(parsing:)` takes, for error messages.
    public static let syntax = "auto or K+M with 1 ≤ K ≤ 32, 0 ≤ M ≤ 16, M ≤ K"

    /// "auto" or a valid "K+M".
    public init?(parsing s: String) {
        if s == "auto" {
            self = .automatic
        } else if let scheme = ErasureScheme(parsing: s) {
            self = .fixed(scheme)
        } else {
            return nil
        }
    }
    public var description: String {
        switch self {
        case .automatic: "auto"
        case .fixed(let s): s.description
        }
    }
}

/// Where objects live, one version of it: the storage nodes with their zones and capacity
/// weights, the scheme new objects get, and for each of `partitions` partitions the `width`
/// nodes holding its shards (slot i holds shard i). The assignment is computed once by whoever
/// proposes the version (`Layout.next`) and replicated as data, so every node agrees on it
/// whatever its floating-point library does.
public struct Layout: Equatable, Sendable {
    public struct Member: Equatable, Sendable {
        public var name: String
        public var zone: String
        /// Share of new shards relative to the others; 0 is drained (holds nothing once migrated).
        public var weight: UInt32
        public init(name: String, zone: String, weight: UInt32) { self.name = name; self.zone = zone; self.weight = weight }
    }

    /// Partitions of every layout (Garage has 256, Ceph a few hundred PGs per pool): 1,024 keeps
    /// each node's share within a few percent of its weight up to a few hundred nodes.
    public static let defaultPartitions = 1024
    public static let maxPartitions = 65_536
    public static let maxMembers = 4096
    public static let maxWeight: UInt32 = 1_000_000
    public static let defaultWeight: UInt32 = 100

    /// 0 before the first node is placed.
    public var version: UInt64 = 0
    public var requested: SchemeRequest = .automatic
    /// The scheme new objects get: the requested one when enough nodes weigh, else the automatic one.
    public var scheme = ErasureScheme(k: 1, m: 0)
    public var partitions = Layout.defaultPartitions
    /// Sorted by name.
    public var members: [Member] = []
    /// partitions × scheme.width indices into `members`.
    public var assignment: [[UInt16]] = []

    public init() {}

    public func member(_ name: String) -> Member? { members.first { $0.name == name } }

    /// The nodes holding `partition`'s shards, shard 0 first.
    public func holders(of partition: Int) -> [String] {
        guard partition >= 0, partition < assignment.count else { return [] }
        return assignment[partition].map { members[Int($0)].name }
    }

    /// How many shard slots each member holds.
    public func slotsPerMember() -> [String: Int] {
        var counts = [Int](repeating: 0, count: members.count)
        for row in assignment { for i in row { counts[Int(i)] += 1 } }
        return Dictionary(uniqueKeysWithValues: zip(members.map(\.name), counts))
    }

    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// The version after this one with `members` (any order) and `requested`: the scheme follows
    /// from the weighted count, and the assignment keeps every surviving node's slots
    /// (`Placement.assign`), so one node more or less moves about 1/N of the shards.
    public func next(members new: [Member], requested: SchemeRequest) throws(Refusal) -> Layout {
        let sorted = new.sorted { $0.name < $1.name }
        guard sorted.count <= Self.maxMembers else { throw Refusal("more than \(Self.maxMembers) nodes") }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.name == b.name { throw Refusal("node \(a.name) given twice") }
        let weighted = sorted.filter { $0.weight > 0 }.count
        guard weighted > 0 else { throw Refusal("no node would be left with a weight to hold data") }
        var l = Layout()
        l.version = version + 1
        l.requested = requested
        l.partitions = partitions
        l.members = sorted
        switch requested {
        case .fixed(let s) where s.width <= weighted: l.scheme = s
        default: l.scheme = .automatic(nodes: weighted)
        }
        let index = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1.name, UInt16($0)) })
        let previous = assignment.map { $0.map { members[Int($0)].name } }
        let nodes = sorted.map { Placement.Node(name: $0.name, zone: $0.zone, weight: $0.weight) }
        l.assignment = Placement.assign(partitions: partitions, shards: l.scheme.width, nodes: nodes, previous: previous)
            .map { $0.map { index[$0]! } }
        return l
    }

    /// Why this layout cannot be taken as given (from a peer's entry), or nil when it can.
    public func problem() -> String? {
        guard members.count <= Self.maxMembers else { return "too many members" }
        guard scheme.isValid else { return "scheme \(scheme) out of range" }
        if case .fixed(let s) = requested, !s.isValid { return "requested scheme \(s) out of range" }
        for (a, b) in zip(members, members.dropFirst()) where a.name >= b.name { return "members not sorted and unique" }
        guard members.allSatisfy({ $0.weight <= Self.maxWeight }) else { return "weight above \(Self.maxWeight)" }
        guard (1...Self.maxPartitions).contains(partitions), assignment.count == partitions else { return "assignment is not one row per partition" }
        for row in assignment {
            guard row.count == scheme.width, Set(row).count == row.count, row.allSatisfy({ Int($0) < members.count && members[Int($0)].weight > 0 }) else {
                return "a partition's row is not \(scheme.width) distinct weighted members"
            }
        }
        return nil
    }

    // MARK: Encoding

    func encode(_ w: inout BinaryWriter) {
        w.u64(version)
        switch requested {
        case .automatic: w.u8(0); w.u8(0)
        case .fixed(let s): s.write(to: &w)
        }
        scheme.write(to: &w)
        w.u32(UInt32(partitions))
        w.u32(UInt32(members.count))
        for m in members { w.string(m.name); w.string(m.zone); w.u32(m.weight) }
        for row in assignment { for i in row { w.u16(i) } }
    }

    init(reading r: inout BinaryReader) throws(DecodeError) {
        version = try r.u64()
        let (rk, rm) = (Int(try r.u8()), Int(try r.u8()))
        requested = rk == 0 ? .automatic : .fixed(ErasureScheme(k: rk, m: rm))
        scheme = ErasureScheme(k: Int(try r.u8()), m: Int(try r.u8()))
        guard scheme.k >= 1 else { throw DecodeError("layout scheme with no data shard") }
        let p = try r.u32()
        guard p >= 1, p <= Self.maxPartitions else { throw DecodeError("layout of \(p) partitions") }
        partitions = Int(p)
        let n = try r.u32()
        guard n <= Self.maxMembers else { throw DecodeError("layout of \(n) members") }
        for _ in 0..<n { members.append(Member(name: try r.string(), zone: try r.string(), weight: try r.u32())) }
        if members.isEmpty {
            guard version == 0 else { throw DecodeError("layout version \(version) with no members") }
            return  // the empty layout: nothing placed yet
        }
        // Bounded before reading: the rows' bytes must be there.
        guard r.remaining >= partitions * scheme.width * 2 else { throw DecodeError("layout assignment cut short") }
        assignment = try (0..<partitions).map { _ throws(DecodeError) in try (0..<scheme.width).map { _ throws(DecodeError) in try r.u16() } }
        if let p = problem() { throw DecodeError("layout: \(p)") }
    }
}

/// Changes an operator stages with `stacks layout set-weight|drain|set-scheme`, applied together
/// as one new version by `stacks layout apply`.
public struct LayoutStage: Equatable, Sendable {
    public var weights: [String: UInt32] = [:]
    public var scheme: SchemeRequest?
    public init(weights: [String: UInt32] = [:], scheme: SchemeRequest? = nil) { self.weights = weights; self.scheme = scheme }
    public var isEmpty: Bool { weights.isEmpty && scheme == nil }

    func encode(_ w: inout BinaryWriter) {
        w.u32(UInt32(weights.count))
        for (n, v) in weights.sorted(by: { $0.key < $1.key }) { w.string(n); w.u32(v) }
        switch scheme {
        case nil: w.u8(0)
        case .automatic: w.u8(1)
        case .fixed(let s): w.u8(2); s.write(to: &w)
        }
    }

    init(reading r: inout BinaryReader) throws(DecodeError) {
        let n = try r.u32()
        guard n <= Layout.maxMembers else { throw DecodeError("\(n) staged weights") }
        for _ in 0..<n { weights[try r.string()] = try r.u32() }
        switch try r.u8() {
        case 0: scheme = nil
        case 1: scheme = .automatic
        case 2: scheme = .fixed(try ErasureScheme(reading: &r, what: "staged"))
        default: throw DecodeError("unknown staged scheme")
        }
    }
}

extension ClusterState {
    /// What `stacks layout apply` commits: the next version with the staged weights and scheme,
    /// and the stage it took in; nil when nothing is staged.
    public func stagedLayout() throws(Layout.Refusal) -> (layout: Layout, consumed: LayoutStage)? {
        guard !staged.isEmpty else { return nil }
        var members = layout.members
        for i in members.indices { if let w = staged.weights[members[i].name] { members[i].weight = w } }
        return (try layout.next(members: members, requested: staged.scheme ?? layout.requested), staged)
    }
}
