import Gossip
import Telemetry

/// The gossip shell's series. Counters move as datagrams pass; the member gauges and the core's
/// own counts (probes are counted as sent, refutations and bound refusals by the core) are read
/// on gossip's loop before each scrape.
struct GossipMetrics {
    static let packets = Series("stacks_gossip_packets_total", "Gossip datagrams by direction and message kind.")
    static let bytes = Series("stacks_gossip_bytes_total", "Bytes of gossip datagrams (sealed) by direction and message kind.")
    static let dropped = Series("stacks_gossip_dropped_total", "Gossip datagrams dropped unread, by reason.")
    static let members = Series("stacks_gossip_members", "Members of the gossip list by state, this node included.")
    static let probes = Series("stacks_gossip_probes_total", "Direct probes (pings) this node sent.")
    static let suspicions = Series("stacks_gossip_suspicions_total", "Members this node came to hold suspect.")
    static let refutations = Series("stacks_gossip_refutations_total", "Suspicions of this node that it refuted.")
    static let refused = Series("stacks_gossip_refused_at_bounds_total", "New-member rumors and ping requests refused at the member and relay bounds.")

    /// Message kinds as labels; `keyring` is the cluster-wide keyring protocol, `unknown` a
    /// datagram that did not open.
    static let kinds = ["ping", "ping_request", "ack", "nack", "push_pull", "gossip", "keyring", "unknown"]
    static let dropReasons = [
        "unauthenticated", "unstamped", "replayed", "stale", "clock_skew", "malformed", "keyring_busy", "keyring_clock_skew",
        "keyring_by_log",
    ]

    let sent: [String: (packets: CoreMetrics.Counter, bytes: CoreMetrics.Counter)]
    let received: [String: (packets: CoreMetrics.Counter, bytes: CoreMetrics.Counter)]
    let drops: [String: CoreMetrics.Counter]
    let memberGauges: [MemberStatus: CoreMetrics.Gauge]
    let probesSent: CoreMetrics.Counter
    let suspected: CoreMetrics.Counter
    let refuted: CoreMetrics.Counter
    let refusedAtBounds: CoreMetrics.Counter
    /// The core's counts already added to `refuted` and `refusedAtBounds`.
    var coreRefutations = 0, coreRefused = 0

    init(_ m: Metrics) {
        func pair(_ direction: String, _ kind: String) -> (packets: CoreMetrics.Counter, bytes: CoreMetrics.Counter) {
            (m.counter(Self.packets, [("direction", direction), ("kind", kind)]), m.counter(Self.bytes, [("direction", direction), ("kind", kind)]))
        }
        sent = Dictionary(uniqueKeysWithValues: Self.kinds.filter { $0 != "unknown" }.map { ($0, pair("sent", $0)) })
        received = Dictionary(uniqueKeysWithValues: Self.kinds.map { ($0, pair("received", $0)) })
        drops = Dictionary(uniqueKeysWithValues: Self.dropReasons.map { ($0, m.counter(Self.dropped, [("reason", $0)])) })
        memberGauges = Dictionary(uniqueKeysWithValues: [MemberStatus.alive, .suspect, .dead, .left].map { ($0, m.gauge(Self.members, [("state", "\($0)")])) })
        probesSent = m.counter(Self.probes)
        suspected = m.counter(Self.suspicions)
        refuted = m.counter(Self.refutations)
        refusedAtBounds = m.counter(Self.refused)
    }

    static func kind(_ message: Message) -> String {
        switch message {
        case .ping: "ping"
        case .pingRequest: "ping_request"
        case .ack: "ack"
        case .nack: "nack"
        case .pushPull: "push_pull"
        case .gossip: "gossip"
        }
    }

    func countSent(_ kind: String, bytes: Int) {
        sent[kind]?.packets.increment()
        sent[kind]?.bytes.increment(by: bytes)
    }

    func countReceived(_ kind: String, bytes: Int) {
        received[kind]?.packets.increment()
        received[kind]?.bytes.increment(by: bytes)
    }

    func drop(_ reason: String) { drops[reason]?.increment() }

    /// On the loop, before a scrape.
    mutating func sample(_ core: SWIM) {
        var counts: [MemberStatus: Int] = [.alive: 0, .suspect: 0, .dead: 0, .left: 0]
        for m in core.members { counts[m.status, default: 0] += 1 }
        for (status, gauge) in memberGauges { gauge.record(counts[status] ?? 0) }
        refuted.increment(by: core.refutations - coreRefutations)
        refusedAtBounds.increment(by: core.refusedAtBounds - coreRefused)
        coreRefutations = core.refutations
        coreRefused = core.refusedAtBounds
    }
}
