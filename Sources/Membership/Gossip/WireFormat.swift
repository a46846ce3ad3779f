import Support

/// The gossip wire format, version 1: compact, explicit, and strict.
///
///     packet  version:u8=1 type:u8 from:str fromAddress:str <message fields> rumorCount:u8 rumor*
///     str     length:u8 utf8        (names, addresses, tag keys and values: at most 255 bytes)
///     varint  LEB128 unsigned       (incarnations, sequence numbers, counts)
///     tags    count:varint (key:str value:str)*
///     rumor   kind:u8 name:str incarnation:varint then by kind:
///             alive: address:str tags · suspect, dead: from:str · left: nothing
///     state   name:str address:str status:u8 incarnation:varint tags
///
/// Messages: ping seq target:str · pingRequest seq target:str targetAddress:str · ack seq ·
/// nack seq · pushPull flags:u8 (bit 0 reply, bit 1 join, bit 2 part) count:varint state* · gossip.
/// Decoding rejects unknown versions, types and kinds, short input, and trailing bytes.
public enum WireFormat {
    /// Tags per member a decoder accepts (user tags and the node's reserved ones together).
    public static let maxTags = 64

    public static let version: UInt8 = 1

    /// The project's one decode error (`Support.DecodeError`), named here for the wire format's users.
    public typealias DecodeError = Support.DecodeError

    public static func encode(_ p: Packet) -> [UInt8] {
        var w = Writer()
        w.bytes.append(version)
        switch p.message {
        case .ping: w.bytes.append(1)
        case .pingRequest: w.bytes.append(2)
        case .ack: w.bytes.append(3)
        case .nack: w.bytes.append(4)
        case .pushPull: w.bytes.append(5)
        case .gossip: w.bytes.append(6)
        }
        w.str(p.from); w.str(p.fromAddress)
        switch p.message {
        case .ping(let seq, let target): w.varint(UInt64(seq)); w.str(target)
        case .pingRequest(let seq, let target, let addr): w.varint(UInt64(seq)); w.str(target); w.str(addr)
        case .ack(let seq), .nack(let seq): w.varint(UInt64(seq))
        case .pushPull(let states, let isReply, let isJoin, let isPart):
            w.bytes.append((isReply ? 1 : 0) | (isJoin ? 2 : 0) | (isPart ? 4 : 0))
            w.varint(UInt64(states.count))
            for s in states {
                w.str(s.name); w.str(s.address); w.bytes.append(s.status.rawValue); w.varint(s.incarnation.value); w.tags(s.tags)
            }
        case .gossip: break
        }
        w.bytes.append(UInt8(min(p.rumors.count, 255)))
        for r in p.rumors.prefix(255) {
            switch r {
            case .alive(let n, let addr, let inc, let tags):
                w.bytes.append(1); w.str(n); w.varint(inc.value); w.str(addr); w.tags(tags)
            case .suspect(let n, let inc, let from):
                w.bytes.append(2); w.str(n); w.varint(inc.value); w.str(from)
            case .dead(let n, let inc, let from):
                w.bytes.append(3); w.str(n); w.varint(inc.value); w.str(from)
            case .left(let n, let inc):
                w.bytes.append(4); w.str(n); w.varint(inc.value)
            }
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Packet {
        var r = Reader(bytes: bytes)
        guard try r.u8() == version else { throw DecodeError("gossip packet: unknown version") }
        let type = try r.u8()
        let from = try r.str(), fromAddress = try r.str()
        let message: Message
        switch type {
        case 1: message = .ping(seq: try r.seq(), target: try r.str())
        case 2: message = .pingRequest(seq: try r.seq(), target: try r.str(), targetAddress: try r.str())
        case 3: message = .ack(seq: try r.seq())
        case 4: message = .nack(seq: try r.seq())
        case 5:
            let flags = try r.u8()
            guard flags <= 7 else { throw DecodeError("gossip packet: unknown push-pull flags") }
            let count = try r.count(max: 100_000)
            var states: [MemberState] = []
            for _ in 0..<count {
                let name = try r.str(), address = try r.str()
                guard let status = MemberStatus(rawValue: try r.u8()) else { throw DecodeError("gossip packet: unknown status") }
                states.append(MemberState(name: name, address: address, status: status, incarnation: try r.incarnation(), tags: try r.tags()))
            }
            message = .pushPull(states: states, isReply: flags & 1 != 0, isJoin: flags & 2 != 0, isPart: flags & 4 != 0)
        case 6: message = .gossip
        default: throw DecodeError("gossip packet: unknown message type \(type)")
        }
        let count = Int(try r.u8())
        var rumors: [Rumor] = []
        for _ in 0..<count {
            let kind = try r.u8()
            let name = try r.str(), inc = try r.incarnation()
            switch kind {
            case 1: rumors.append(.alive(name: name, address: try r.str(), incarnation: inc, tags: try r.tags()))
            case 2: rumors.append(.suspect(name: name, incarnation: inc, from: try r.str()))
            case 3: rumors.append(.dead(name: name, incarnation: inc, from: try r.str()))
            case 4: rumors.append(.left(name: name, incarnation: inc))
            default: throw DecodeError("gossip packet: unknown rumor kind \(kind)")
            }
        }
        guard r.at == bytes.count else { throw DecodeError("gossip packet: \(bytes.count - r.at) trailing bytes") }
        return Packet(from: from, fromAddress: fromAddress, message: message, rumors: rumors)
    }

    struct Writer {
        var bytes: [UInt8] = []
        mutating func str(_ s: String) {
            let u = Array(s.utf8.prefix(255))
            bytes.append(UInt8(u.count)); bytes.append(contentsOf: u)
        }
        mutating func varint(_ v: UInt64) {
            var v = v
            while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            bytes.append(UInt8(v))
        }
        mutating func tags(_ t: [String: String]) {
            varint(UInt64(t.count))
            for k in t.keys.sorted() { str(k); str(t[k]!) }
        }
    }

    struct Reader {
        let bytes: [UInt8]
        var at = 0
        mutating func u8() throws(DecodeError) -> UInt8 {
            guard at < bytes.count else { throw DecodeError("gossip packet: truncated") }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func str() throws(DecodeError) -> String {
            let n = Int(try u8())
            guard bytes.count - at >= n else { throw DecodeError("gossip packet: truncated string") }
            defer { at += n }
            guard let s = String(validating: bytes[at..<(at + n)], as: UTF8.self) else { throw DecodeError("gossip packet: invalid UTF-8") }
            return s
        }
        mutating func varint() throws(DecodeError) -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                let b = try u8()
                guard shift < 64 else { throw DecodeError("gossip packet: varint too long") }
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
        }
        mutating func seq() throws(DecodeError) -> UInt32 {
            let v = try varint()
            guard v <= UInt64(UInt32.max) else { throw DecodeError("gossip packet: sequence number out of range") }
            return UInt32(v)
        }
        mutating func count(max: Int) throws(DecodeError) -> Int {
            let v = try varint()
            guard v <= UInt64(max) else { throw DecodeError("gossip packet: count \(v) exceeds \(max)") }
            return Int(v)
        }
        mutating func tags() throws(DecodeError) -> [String: String] {
            var t: [String: String] = [:]
            for _ in 0..<(try count(max: WireFormat.maxTags)) { t[try str()] = try str() }
            return t
        }
        /// Incarnations past `Incarnation.limit` are refused: a member refutes with one more than
        /// what it heard, so an accusation at `UInt64.max` would otherwise trap it.
        mutating func incarnation() throws(DecodeError) -> Incarnation {
            let v = try varint()
            guard v <= Incarnation.limit.value else { throw DecodeError("gossip packet: incarnation \(v) out of range") }
            return Incarnation(v)
        }
    }
}
