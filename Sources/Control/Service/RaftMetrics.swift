import Raft
import Telemetry

/// The Raft shell's series. Events (proposals, leader changes, fsyncs, snapshots) are recorded
/// as they happen; the indexes, the role and the transport's refusal counts are read on Raft's
/// loop before each scrape.
struct RaftMetrics {
    static let term = Series("stacks_raft_term", "Current Raft term on this node.")
    static let role = Series("stacks_raft_role", "1 for this node's current Raft role, 0 for the others.")
    static let commitIndex = Series("stacks_raft_commit_index", "Highest log index known committed.")
    static let appliedIndex = Series("stacks_raft_applied_index", "Highest log index applied to the cluster state.")
    static let proposals = Series("stacks_raft_proposals_total", "Changes submitted to the cluster through this node.")
    static let leaderChanges = Series("stacks_raft_leader_changes_total", "Times this node saw the leader change to another node.")
    static let fsync = Series(
        "stacks_raft_wal_fsync_duration_seconds", "Latency of the write-ahead log's fdatasync, one per durable batch.",
        buckets: [0.0001, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024])
    static let snapshotBytes = Series(
        "stacks_raft_snapshot_bytes", "Sizes of snapshots of the cluster state written or installed.",
        buckets: [1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 23, 1 << 26, 1 << 29].map(Double.init))
    static let dropped = Series("stacks_raft_frames_dropped_total", "Raft frames dropped unread, by reason.")
    static let refused = Series("stacks_raft_connections_refused_total", "Raft connections refused at accept (per-host or total cap).")
    static let unauthenticated = Series(
        "stacks_raft_handshakes_refused_total", "Raft connections refused because the peer did not prove a credential of this cluster (or is removed).")
    static let inbound = Series("stacks_raft_inbound_connections", "Accepted Raft connections open now.")

    static let roles = ["follower", "pre_candidate", "candidate", "leader"]

    let termGauge: CoreMetrics.Gauge
    let roleGauges: [String: CoreMetrics.Gauge]
    let commit: CoreMetrics.Gauge
    let applied: CoreMetrics.Gauge
    let proposed: CoreMetrics.Counter
    let leaderChanged: CoreMetrics.Counter
    let fsyncTimer: CoreMetrics.Timer
    let snapshots: CoreMetrics.Recorder
    /// Frames that did not open, were out of order or replayed, or did not decode; frames from
    /// another cluster sharing the gossip key; messages the core refused as no correct peer sends.
    let undecodable: CoreMetrics.Counter, foreign: CoreMetrics.Counter, rejected: CoreMetrics.Counter
    /// Frames from an authenticated member in another's name; changes forwarded by a member whose
    /// role may not propose them (`Roles`).
    let impersonating: CoreMetrics.Counter, forbidden: CoreMetrics.Counter
    let refusedAtAccept: CoreMetrics.Counter
    let handshakesRefused: CoreMetrics.Counter
    let inboundGauge: CoreMetrics.Gauge
    /// The shell's and core's counts already added to the counters above.
    var counted = (undecodable: 0, foreign: 0, rejected: 0, refused: 0, handshakes: 0)

    init(_ m: Metrics) {
        termGauge = m.gauge(Self.term)
        roleGauges = Dictionary(uniqueKeysWithValues: Self.roles.map { ($0, m.gauge(Self.role, [("role", $0)])) })
        commit = m.gauge(Self.commitIndex)
        applied = m.gauge(Self.appliedIndex)
        proposed = m.counter(Self.proposals)
        leaderChanged = m.counter(Self.leaderChanges)
        fsyncTimer = m.timer(Self.fsync)
        snapshots = m.histogram(Self.snapshotBytes)
        undecodable = m.counter(Self.dropped, [("reason", "undecodable")])
        foreign = m.counter(Self.dropped, [("reason", "foreign_cluster")])
        rejected = m.counter(Self.dropped, [("reason", "rejected_by_core")])
        impersonating = m.counter(Self.dropped, [("reason", "impersonation")])
        forbidden = m.counter(Self.dropped, [("reason", "role")])
        refusedAtAccept = m.counter(Self.refused)
        handshakesRefused = m.counter(Self.unauthenticated)
        inboundGauge = m.gauge(Self.inbound)
    }

    static func name(_ role: RaftNode.Role) -> String {
        switch role {
        case .follower: "follower"
        case .preCandidate: "pre_candidate"
        case .candidate: "candidate"
        case .leader: "leader"
        }
    }

    /// On the loop, before a scrape.
    mutating func sample(_ core: RaftNode, framesDropped: Int, foreignFrames: Int, inboundRefused: Int, handshakesRefused refusedHandshakes: Int, inbound: Int)
    {
        termGauge.record(Int64(clamping: core.term.value))
        let current = Self.name(core.role)
        for (r, g) in roleGauges { g.record(r == current ? 1 : 0) }
        commit.record(Int64(clamping: core.commit.value))
        applied.record(Int64(clamping: core.applied.value))
        inboundGauge.record(inbound)
        undecodable.increment(by: framesDropped - counted.undecodable)
        foreign.increment(by: foreignFrames - counted.foreign)
        rejected.increment(by: core.rejected - counted.rejected)
        refusedAtAccept.increment(by: inboundRefused - counted.refused)
        handshakesRefused.increment(by: refusedHandshakes - counted.handshakes)
        counted = (framesDropped, foreignFrames, core.rejected, inboundRefused, refusedHandshakes)
    }
}
