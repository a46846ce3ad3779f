/// Binds sealed frames to one connection and one position on it, so a frame recorded on one
/// connection opens on no other and not twice on its own. The receiving side picks a fresh
/// random challenge per connection and sends it first; every plaintext sent to it is
/// `challenge · seq:u64 · body`, seq counting from 0. The Raft transport binds one way (only the
/// acceptor reads frames), the data connection both ways (each side challenges the other).
public enum SessionBinding {
    public static let challengeBytes = 16

    public static func bind(challenge: [UInt8], seq: UInt64, _ body: [UInt8]) -> [UInt8] {
        var w = BinaryWriter()
        for b in challenge { w.u8(b) }
        w.u64(seq)
        return w.bytes + body
    }

    /// The body of a frame bound to `challenge` and numbered `seq`; nil for any other.
    public static func unbind(_ plain: [UInt8], challenge: [UInt8], seq: UInt64) -> [UInt8]? {
        guard challenge.count == challengeBytes, plain.count >= challengeBytes + 8,
            plain.prefix(challengeBytes).elementsEqual(challenge)
        else { return nil }
        var r = BinaryReader(Array(plain[challengeBytes..<(challengeBytes + 8)]))
        guard let s = try? r.u64(), s == seq else { return nil }
        return Array(plain[(challengeBytes + 8)...])
    }
}
