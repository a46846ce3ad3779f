/// Who gets an accepted connection: every one counts against `maxTotal`; a stranger's (a source
/// address that is no member's) also against `maxStrangers` in all and `maxPerStranger` from its
/// address, so strangers, however many sockets they open and hold until the handshake deadline,
/// leave room for the members. Pure; the shells ask and release on their own loop or lock.
public struct InboundBudget: Sendable {
    public let maxTotal: Int
    public let maxStrangers: Int
    public let maxPerStranger: Int
    public private(set) var total = 0
    public private(set) var strangers = 0
    var byHost: [String: Int] = [:]

    public init(maxTotal: Int, maxStrangers: Int, maxPerStranger: Int) {
        self.maxTotal = max(1, maxTotal); self.maxStrangers = max(1, maxStrangers); self.maxPerStranger = max(1, maxPerStranger)
    }

    /// Whether a connection from `host` may be kept; counts it if so.
    public mutating func admit(_ host: String, member: Bool) -> Bool {
        guard total < maxTotal else { return false }
        if !member {
            guard strangers < maxStrangers, byHost[host, default: 0] < maxPerStranger else { return false }
            strangers += 1
            byHost[host, default: 0] += 1
        }
        total += 1
        return true
    }

    /// A connection `admit` counted has closed (with the same `member` it was admitted with).
    public mutating func release(_ host: String, member: Bool) {
        total -= 1
        guard !member else { return }
        strangers -= 1
        byHost[host, default: 1] -= 1
        if byHost[host] == 0 { byHost[host] = nil }
    }
}
