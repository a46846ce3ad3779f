/// Little-endian, length-prefixed binary encoding for on-disk records and wire frames.
/// Decoders reject anything short, long or unknown.
public struct BinaryWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    public mutating func blob(_ v: [UInt8]) { u32(UInt32(v.count)); bytes.append(contentsOf: v) }
    public mutating func string(_ v: String) { blob(Array(v.utf8)) }
}

public struct BinaryReader {
    private let bytes: [UInt8]
    private var at = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { at == bytes.count }
    /// Bytes not yet read: a count from the input is checked against it before anything is allocated.
    public var remaining: Int { bytes.count - at }

    private mutating func take(_ n: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        guard n >= 0, bytes.count - at >= n else { throw DecodeError("record truncated at byte \(at)") }
        defer { at += n }
        return bytes[at..<(at + n)]
    }

    public mutating func u8() throws(DecodeError) -> UInt8 { try take(1).first! }
    public mutating func u16() throws(DecodeError) -> UInt16 {
        try take(2).reversed().reduce(0) { $0 << 8 | UInt16($1) }
    }
    public mutating func u32() throws(DecodeError) -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    public mutating func u64() throws(DecodeError) -> UInt64 {
        try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    public mutating func i64() throws(DecodeError) -> Int64 { Int64(bitPattern: try u64()) }
    /// A u64 used as a size, count or offset: refused unless it is at most `max`, so that bit
    /// rot or a hostile peer fails the check instead of trapping a conversion or a sum.
    public mutating func int(max: Int) throws(DecodeError) -> Int {
        let v = try u64()
        guard v <= UInt64(max) else { throw DecodeError("value \(v) exceeds \(max)") }
        return Int(v)
    }
    /// A u32 count of items that follow, refused above `max`.
    public mutating func count(max: Int) throws(DecodeError) -> Int {
        let n = Int(try u32())
        guard n <= max else { throw DecodeError("\(n) items exceed \(max)") }
        return n
    }
    public mutating func bytes(_ n: Int) throws(DecodeError) -> [UInt8] { Array(try take(n)) }
    public mutating func blob(max: Int = 1 << 24) throws(DecodeError) -> [UInt8] {
        let n = Int(try u32())
        guard n <= max else { throw DecodeError("field of \(n) bytes exceeds \(max)") }
        return Array(try take(n))
    }
    public mutating func string(max: Int = 1 << 20) throws(DecodeError) -> String {
        let b = try blob(max: max)
        guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError("invalid UTF-8 string") }
        return s
    }
    public func expectEnd() throws(DecodeError) {
        guard isAtEnd else { throw DecodeError("\(bytes.count - at) trailing bytes") }
    }
}
