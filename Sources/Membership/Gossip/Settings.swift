/// SWIM + Lifeguard parameters, named as in the papers and HashiCorp memberlist (whose LAN
/// defaults these are, so measurements against Serf compare like with like).
public struct SWIMSettings: Sendable, Equatable {
    /// Time between probes of successive members (SWIM protocol period T').
    public var probeInterval = Span.seconds(1)
    /// How long a direct ping waits for its ack before asking k others (SWIM §3.2).
    public var probeTimeout = Span.milliseconds(500)
    /// k: members asked to probe indirectly.
    public var indirectChecks = 3
    /// Rumors ride every message; with nothing else to send, gossip goes to `gossipFanout`
    /// random members every `gossipInterval`.
    public var gossipInterval = Span.milliseconds(200)
    public var gossipFanout = 3
    /// A rumor is sent retransmitMultiplier · ⌈log10(N+1)⌉ times.
    public var retransmitMultiplier = 4
    /// Suspicion lasts between suspicionMultiplier · max(1, log10 N) · probeInterval and
    /// suspicionMaxMultiplier times that, shrinking with independent confirmations (Lifeguard §4.2).
    public var suspicionMultiplier = 4
    public var suspicionMaxMultiplier = 6
    /// Full-state exchange with one random member (anti-entropy; heals partitions).
    public var pushPullInterval = Span.seconds(30)
    /// Extra exchanges after joining, so a burst of joins converges without waiting for
    /// `pushPullInterval` even when rumors were crowded out of packets.
    public var joinSyncSchedule: [Span] = [.milliseconds(300), .milliseconds(700), .seconds(1.5), .seconds(3)]
    /// Lifeguard (local health awareness, dynamic suspicion, buddy system, nacks). Off = plain SWIM.
    public var lifeguard = true
    /// Local health score ceiling: probe interval and timeout stretch by up to (awarenessMax + 1)×.
    public var awarenessMax = 8
    /// Member state per push-pull datagram (bytes, roughly); a bigger state goes in parts.
    public var pushPullBytes = 8 << 10
    /// Bound on rumors piggybacked per packet.
    public var maxRumorsPerPacket = 16
    /// Bound on a packet's encoded size: rumors are piggybacked only while they fit. Room is left
    /// under UDP's 65,507 bytes for the seal; one member's largest state (64 tags of 255-byte
    /// keys and values, about 33 KB) always fits.
    public var maxPacketBytes = 60_000
    /// Dead and left members stay listed this long, then are forgotten.
    public var deadRetention = Span.seconds(3600)
    /// Bound on members listed (any status). Past it, rumors about members not yet listed are
    /// refused and counted: a key holder cannot grow the table without end. Serf and memberlist
    /// have no cap; 10,000 is far past the clusters they are run at.
    public var maxMembers = 10_000
    /// Bound on indirect probes relayed for others at once (each lives under a probe timeout).
    /// Past it, ping requests are refused and counted, so a flood cannot grow the table or use
    /// this node to ping others on its behalf without end.
    public var maxRelays = 1_024

    public init() {}

    /// Lifeguard switched off: fixed suspicion timeout, no awareness, no buddy system, no nacks.
    public static var plainSWIM: SWIMSettings { var s = SWIMSettings(); s.lifeguard = false; return s }
}
