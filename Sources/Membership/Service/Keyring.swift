import Files
import Security
import Support

/// Gossip encryption keys: every packet is sealed with the primary key and opened with any key
/// in the ring, so keys rotate without downtime (install everywhere, use everywhere, remove).
/// Persisted in `DATA_DIR/keyring`, one base64 key per line, primary first.
public struct Keyring: Sendable, Equatable {
    public private(set) var keys: [[UInt8]]
    public var primary: [UInt8] { keys[0] }
    static let packetVersion: UInt8 = 1

    public enum KeyringError: Error, CustomStringConvertible, Equatable {
        case badKey(String)
        case unknownKey
        case removingPrimary
        public var description: String {
            switch self {
            case .badKey(let why): "invalid gossip key: \(why)"
            case .unknownKey: "that key is not in the keyring"
            case .removingPrimary: "the primary key cannot be removed: use another key first"
            }
        }
    }

    public init(primary: [UInt8]) throws(KeyringError) {
        guard primary.count == Sodium.AEAD.keyBytes else { throw .badKey("need \(Sodium.AEAD.keyBytes) bytes, got \(primary.count)") }
        keys = [primary]
    }

    public static func parse(base64 s: String) throws(KeyringError) -> [UInt8] {
        guard let k = Base64.decode(s.trimmingWhitespace) else { throw .badKey("not base64") }
        guard k.count == Sodium.AEAD.keyBytes else { throw .badKey("need \(Sodium.AEAD.keyBytes) bytes, got \(k.count)") }
        return k
    }

    public static func generateKey() -> String { Base64.encode(Sodium.randomBytes(Sodium.AEAD.keyBytes)) }

    public mutating func install(_ key: [UInt8]) {
        if !keys.contains(key) { keys.append(key) }
    }

    public mutating func use(_ key: [UInt8]) throws(KeyringError) {
        guard let i = keys.firstIndex(of: key) else { throw .unknownKey }
        keys.swapAt(0, i)
    }

    public mutating func remove(_ key: [UInt8]) throws(KeyringError) {
        guard let i = keys.firstIndex(of: key) else { throw .unknownKey }
        guard i != 0 else { throw .removingPrimary }
        keys.remove(at: i)
    }

    /// `version || nonce || ciphertext || tag`; the version byte is authenticated as associated data.
    public func seal(_ plaintext: [UInt8]) -> [UInt8] {
        // Sealing with a 32-byte key cannot fail; the key length was checked on the way in.
        let sealed = (try? Sodium.AEAD.seal(plaintext, key: primary, associatedData: [Self.packetVersion])) ?? []
        return [Self.packetVersion] + sealed
    }

    /// nil when no key in the ring opens it: wrong cluster, tampering or garbage.
    public func open(_ datagram: [UInt8]) -> [UInt8]? {
        guard datagram.first == Self.packetVersion else { return nil }
        let body = Array(datagram.dropFirst())
        for k in keys {
            if let p = try? Sodium.AEAD.open(body, key: k, associatedData: [Self.packetVersion]) { return p }
        }
        return nil
    }

    /// Gossip datagrams: `2 || nonce || ciphertext || tag`, the plaintext led by the sender's wall
    /// clock (`stamp:i64`, nanoseconds) so that the receiver's `ReplayWindow` can refuse a datagram
    /// sent again. The first 8 bytes of the random nonce are the datagram's id.
    static let datagramVersion: UInt8 = 2

    public func sealDatagram(_ plaintext: [UInt8], stamp: Int64) -> [UInt8] {
        var w = BinaryWriter()
        w.i64(stamp)
        let sealed = (try? Sodium.AEAD.seal(w.bytes + plaintext, key: primary, associatedData: [Self.datagramVersion])) ?? []
        return [Self.datagramVersion] + sealed
    }

    public struct OpenedDatagram: Equatable, Sendable {
        public var id: UInt64
        public var stamp: Int64
        public var payload: [UInt8]
    }

    /// nil when no key in the ring opens it (wrong cluster, tampering, garbage, or a datagram of
    /// the unstamped version 1, which `isUnstamped` tells apart).
    public func openDatagram(_ datagram: [UInt8]) -> OpenedDatagram? {
        guard datagram.first == Self.datagramVersion else { return nil }
        let body = Array(datagram.dropFirst())
        for k in keys {
            guard let p = try? Sodium.AEAD.open(body, key: k, associatedData: [Self.datagramVersion]), p.count >= 8 else { continue }
            var stamp = BinaryReader(Array(p.prefix(8))), id = BinaryReader(Array(body.prefix(8)))
            guard let s = try? stamp.i64(), let n = try? id.u64() else { return nil }
            return OpenedDatagram(id: n, stamp: s, payload: Array(p.dropFirst(8)))
        }
        return nil
    }

    /// A datagram of a node from before stamps (version 1): refused, since it cannot be told from a replay.
    public static func isUnstamped(_ datagram: [UInt8]) -> Bool { datagram.first == packetVersion }

    // MARK: Persistence

    public static func load(path: String) throws -> Keyring? {
        guard Files.exists(path) else { return nil }
        let lines = String(decoding: try Files.read(path), as: UTF8.self).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        guard let first = lines.first else { throw KeyringError.badKey("\(path) is empty") }
        var ring = try Keyring(primary: parse(base64: first))
        for l in lines.dropFirst() { ring.install(try parse(base64: l)) }
        return ring
    }

    public func save(path: String) throws {
        try Files.writeAtomically(Array(keys.map { Base64.encode($0) + "\n" }.joined().utf8), to: path)
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
