import Checksum
import Compression
import Support

/// What every shard block of a stripe carries, so any k shards of an object describe it:
/// its block number, the object bytes in it, the bytes erasure-coded (LZ4's output when that
/// was smaller), and whether they are compressed.
///
///     index:u32 rawLength:u32 storedLength:u32 flags:u8 (bit 0: LZ4)      (13 bytes)
public struct StripeHeader: Equatable, Sendable {
    public var index: UInt32
    public var rawLength: UInt32
    public var storedLength: UInt32
    public var compressed: Bool
    public static let encodedSize = 13
    /// Blocks are at most this big (the bound checked before any length from outside is used).
    public static let maxBlock = 64 << 20

    public init(index: UInt32, rawLength: UInt32, storedLength: UInt32, compressed: Bool) {
        self.index = index; self.rawLength = rawLength; self.storedLength = storedLength; self.compressed = compressed
    }

    public func encode(_ w: inout BinaryWriter) {
        w.u32(index); w.u32(rawLength); w.u32(storedLength); w.u8(compressed ? 1 : 0)
    }

    public init(reading r: inout BinaryReader) throws(DecodeError) {
        index = try r.u32(); rawLength = try r.u32(); storedLength = try r.u32()
        let flags = try r.u8()
        guard flags <= 1 else { throw DecodeError("unknown stripe flags \(flags)") }
        compressed = flags == 1
        if let p = problem { throw DecodeError(p) }
    }

    /// Why these lengths cannot be a block's, or nil.
    var problem: String? {
        if rawLength > Self.maxBlock { return "stripe of \(rawLength) bytes, more than \(Self.maxBlock)" }
        if compressed ? storedLength >= rawLength : storedLength != rawLength { return "stripe stores \(storedLength) of \(rawLength) bytes" }
        return nil
    }
}

/// A block encoded into k+m shard blocks, lent to the caller for the time of one call: shard i
/// is `shard(i)`, its CRC32C `checksums[i]`. Data shards are the stored bytes themselves (the
/// last one zero-padded), so a healthy read decodes nothing.
public struct Stripe {
    public let header: StripeHeader
    public let shardLength: Int
    public let checksums: [UInt32]
    let base: UnsafeBufferPointer<UInt8>

    public var count: Int { checksums.count }
    /// Valid only inside the `emit` call that lent this stripe.
    public func shard(_ i: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: base[(i * shardLength)..<((i + 1) * shardLength)]) }
}

/// Streams an object into stripes: bytes in, one stripe out per `blockSize` bytes (and one for
/// the tail at `finish`; an empty object has none). Each block is LZ4-compressed when that saves
/// a sixteenth, then Reed-Solomon encoded in place. Bytes are copied once, into the stripe
/// buffer; LZ4 writes into a spare one, which becomes the stripe buffer when it shrank the block.
public struct StripeEncoder {
    public let code: ReedSolomon
    public let blockSize: Int
    public let compress: Bool
    private var stripe: [UInt8]
    /// Where LZ4 writes (only when compressing); swapped with `stripe` when the block shrank.
    private var spare: [UInt8]
    private var filled = 0
    public private(set) var blocks: UInt32 = 0
    static let probeBytes = 64 << 10

    public init(code: ReedSolomon, blockSize: Int = 1 << 20, compress: Bool = true) {
        precondition(blockSize > 0 && blockSize <= StripeHeader.maxBlock, "block size out of range")
        self.code = code
        self.blockSize = blockSize
        self.compress = compress
        stripe = [UInt8](repeating: 0, count: code.shardLength(forBlockOf: blockSize) * (code.dataShards + code.parityShards))
        spare = compress ? stripe : []
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (Stripe) throws -> Void) rethrows {
        var at = 0
        while at < bytes.count {
            let n = min(blockSize - filled, bytes.count - at)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])
            stripe.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: filled).copyMemory(from: piece.baseAddress!, byteCount: n) }
            filled += n
            at += n
            if filled == blockSize { try flush(emit) }
        }
    }

    public mutating func feed(_ bytes: [UInt8], _ emit: (Stripe) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { try feed($0, emit) }
    }

    /// Emits the last, partial block, if any.
    public mutating func finish(_ emit: (Stripe) throws -> Void) rethrows {
        if filled > 0 { try flush(emit) }
    }

    private mutating func flush(_ emit: (Stripe) throws -> Void) rethrows {
        let raw = filled
        var stored = raw
        var compressed = false
        let k = code.dataShards, total = code.dataShards + code.parityShards
        if compress, let n = lz4(raw) {
            swap(&stripe, &spare)
            stored = n
            compressed = true
        }
        try stripe.withUnsafeMutableBufferPointer { s in
            let length = code.shardLength(forBlockOf: stored)
            // Zero the padding of the last data shard (it may hold an earlier block's bytes).
            (s.baseAddress! + stored).update(repeating: 0, count: length * k - stored)
            code.encodeParity(stripe: s, length: length)
            let view = UnsafeBufferPointer(s)
            let sums = (0..<total).map { i in Checksum.crc32c(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(view)[(i * length)..<((i + 1) * length)]))
            }
            let header = StripeHeader(index: blocks, rawLength: UInt32(raw), storedLength: UInt32(stored), compressed: compressed)
            try emit(Stripe(header: header, shardLength: length, checksums: sums, base: view))
        }
        blocks += 1
        filled = 0
    }

    /// LZ4 of the block's `raw` bytes into `spare`, if that saves a sixteenth. A big block is
    /// first probed on its first 64 KiB: what does not shrink there (media, archives, encrypted
    /// data) is stored raw without compressing it all.
    private mutating func lz4(_ raw: Int) -> Int? {
        stripe.withUnsafeBytes { src in
            spare.withUnsafeMutableBytes { dst in
                let probe = min(raw, Self.probeBytes)
                if raw >= 2 * Self.probeBytes,
                    LZ4.compress(UnsafeRawBufferPointer(rebasing: src[0..<probe]), into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<(probe - probe / 16)]))
                        == nil
                {
                    return nil
                }
                // Room for 15/16 of the block: LZ4 gives up early on what would not shrink enough.
                return LZ4.compress(UnsafeRawBufferPointer(rebasing: src[0..<raw]), into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<(raw - raw / 16)]))
            }
        }
    }
}

/// Rebuilds blocks from whatever shards of a stripe arrived: each is checked against its
/// CRC32C first, and a shard that fails counts as lost and is reported, for repair.
public struct StripeDecoder {
    public let code: ReedSolomon
    public init(code: ReedSolomon) { self.code = code }

    /// `shards` and `checksums` have k+m slots, nil where a shard is missing.
    public func decode(_ header: StripeHeader, shards: [[UInt8]?], checksums: [UInt32?]) throws(ErasureError) -> (block: [UInt8], corrupt: [Int]) {
        let total = code.dataShards + code.parityShards
        guard shards.count == total, checksums.count == total else { throw .shardCount(expected: total, got: shards.count) }
        if let p = header.problem { throw .badStripe(p) }
        let length = code.shardLength(forBlockOf: Int(header.storedLength))
        var usable = shards
        var corrupt: [Int] = []
        for i in 0..<total {
            guard let s = shards[i] else { continue }
            if s.count != length || checksums[i] != Checksum.crc32c(s) {
                usable[i] = nil
                corrupt.append(i)
            }
        }
        let stored = try code.decode(shards: usable, size: Int(header.storedLength))
        guard header.compressed else { return (stored, corrupt) }
        do { return (try LZ4.decompress(stored, rawSize: Int(header.rawLength)), corrupt) } catch {
            throw .badStripe("block \(header.index): \(error)")
        }
    }
}
