import Cluster
import Control
import Foundation
import Hummingbird

/// The layout as `GET /v1/layout` and `stacks layout show` give it (JSON field names are the contract).
public struct LayoutView: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var zone: String
        public var weight: UInt32
        /// Shard slots it holds in this version (of partitions × width).
        public var slots: Int
        /// The weight `stacks layout apply` would give it.
        public var stagedWeight: UInt32?
        enum CodingKeys: String, CodingKey { case name, zone, weight, slots, stagedWeight = "staged_weight" }
    }
    public var version: UInt64
    public var scheme: String
    /// "auto" or the K+M an operator asked for.
    public var requested: String
    public var partitions: Int
    public var members: [Member]
    public var stagedScheme: String?
    /// Earlier versions still consulted while data moves.
    public var migrating: [UInt64]
    /// Buckets created with a scheme of their own (`x-stacks-scheme`), and that scheme; optional so
    /// a CLI reads the answer of a node from before bucket schemes.
    public var buckets: [String: String]?
    enum CodingKeys: String, CodingKey {
        case version, scheme, requested, partitions, members, migrating, buckets
        case stagedScheme = "staged_scheme"
    }

    init(_ s: ClusterState) {
        let l = s.layout, slots = l.slotsPerMember()
        version = l.version; scheme = l.scheme.description; requested = l.requested.description; partitions = l.partitions
        members = l.members.map { Member(name: $0.name, zone: $0.zone, weight: $0.weight, slots: slots[$0.name] ?? 0, stagedWeight: s.staged.weights[$0.name]) }
        stagedScheme = s.staged.scheme?.description
        migrating = s.migrating.map(\.version)
        buckets = s.buckets.values.reduce(into: [:]) { out, b in if let own = b.scheme { out[b.name] = own.description } }
    }
}

struct LayoutStageRequest: Codable {
    var weights: [String: UInt32]?
    var scheme: String?
}

/// `/v1/layout`: show, stage (`{"weights": {"NODE": W}, "scheme": "K+M"|"auto"}`), apply, revert.
enum LayoutAPI {
    static func add(to router: Router<BasicRequestContext>, raft: RaftService) {
        router.get("/v1/layout") { _, _ in try AdminAPI.json(raft.read(LayoutView.init)) }
        router.post("/v1/layout/stage") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let req = try? JSONDecoder().decode(LayoutStageRequest.self, from: Data(buffer: body)) else {
                return AdminAPI.problem(.badRequest, "body must be {\"weights\": {\"NODE\": WEIGHT}, \"scheme\": \"K+M\" or \"auto\"}")
            }
            var stage = LayoutStage(weights: req.weights ?? [:])
            if let w = stage.weights.first(where: { $0.value > Layout.maxWeight }) {
                return AdminAPI.problem(.badRequest, "weight \(w.value) for \(w.key) is above \(Layout.maxWeight)")
            }
            if let s = req.scheme {
                guard let scheme = SchemeRequest(parsing: s) else { return AdminAPI.problem(.badRequest, "scheme must be \(SchemeRequest.syntax); got \(s)") }
                stage.scheme = scheme
            }
            guard !stage.isEmpty else { return AdminAPI.problem(.badRequest, "nothing to stage") }
            return try await AdminAPI.clusterCall {
                switch try await raft.submit(.stageLayout(stage)) {
                case .noSuchNode:
                    let unknown = stage.weights.keys.filter { n in raft.read { $0.layout.member(n) == nil } }.sorted()
                    return AdminAPI.problem(.notFound, "not in the layout: \(unknown.joined(separator: ", ")) (see stacks layout show)")
                default: return try AdminAPI.json(raft.read(LayoutView.init))
                }
            }
        }
        router.post("/v1/layout/revert") { _, _ in
            try await AdminAPI.clusterCall {
                _ = try await raft.submit(.revertLayout)
                return try AdminAPI.json(raft.read(LayoutView.init))
            }
        }
        // The staged changes as one new version. Computed here from this node's replica, after a
        // barrier so it is current; if the layout moved on before the commit, computed again.
        router.post("/v1/layout/apply") { _, _ in
            try await AdminAPI.clusterCall {
                for _ in 0..<5 {
                    try await raft.linearizableBarrier()
                    let next: (layout: Layout, consumed: LayoutStage)?
                    do { next = try raft.read { $0 }.stagedLayout() } catch let refusal as Layout.Refusal {
                        return AdminAPI.problem(.conflict, refusal.description)
                    }
                    guard let next else { return AdminAPI.problem(.conflict, "nothing is staged (stacks layout set-weight, drain or set-scheme first)") }
                    if try await raft.submit(.applyLayout(next.layout, consumed: next.consumed)) == .ok {
                        return try AdminAPI.json(raft.read(LayoutView.init))
                    }
                }
                return AdminAPI.problem(.serviceUnavailable, "the layout kept changing while this change was computed; retry")
            }
        }
    }
}
