import Checksum
import Files
import Foundation
import Support
import Testing

@testable import ChunkStore

@Suite struct ShardFileTests {
    let dir: String = {
        let d = NSTemporaryDirectory() + "shard-\(UUID().uuidString)"
        try! Files.makeDirectory(d)
        return d
    }()

    func write(_ data: [UInt8], blockSize: Int, name: String = "s") throws -> String {
        let path = "\(dir)/\(name)"
        let w = try ShardWriter(path: path, blockSize: blockSize)
        var i = 0
        while i < data.count {  // uneven appends cross block boundaries
            let n = min(777, data.count - i)
            try w.append(data[i..<(i + n)]); i += n
        }
        try w.finish()
        return path
    }

    static func sample(_ n: Int, compressible: Bool) -> [UInt8] {
        var x: UInt32 = 2_463_534_242
        return (0..<n).map { i in
            if compressible { return UInt8(ascii: "a") + UInt8(i / 100 % 7) }
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            return UInt8(truncatingIfNeeded: x)
        }
    }

    @Test(arguments: [0, 1, 4095, 4096, 4097, 14_000], [true, false])
    func roundTripAndRanges(size: Int, compressible: Bool) throws {
        let data = Self.sample(size, compressible: compressible)
        let r = try ShardReader(path: write(data, blockSize: 4096))
        #expect(r.rawSize == size)
        var all: [UInt8] = []
        try r.forEachSlice(of: 0..<size) { all.append(contentsOf: $0) }
        #expect(all == data)
        if size > 10 {
            var part: [UInt8] = []
            try r.forEachSlice(of: 5..<(size - 3)) { part.append(contentsOf: $0) }
            #expect(part[...] == data[5..<(size - 3)])
        }
    }

    @Test func compressibleDataShrinks() throws {
        let data = Self.sample(64 << 10, compressible: true)
        let path = try write(data, blockSize: 16 << 10)
        let size = try Files.read(path).count
        #expect(size < data.count / 4)
    }

    @Test func bitRotIsDetectedNotServed() throws {
        let data = Self.sample(10_000, compressible: false)
        let path = try write(data, blockSize: 4096)
        var raw = try Files.read(path)
        raw[5000] ^= 0x40
        try Files.writeAtomically(raw, to: path)
        let r = try ShardReader(path: path)
        #expect(throws: FileError.self) { try r.forEachSlice(of: 0..<10_000) { _ in } }
        // Blocks untouched by the flip still read.
        var first: [UInt8] = []
        try r.forEachSlice(of: 0..<4096) { first.append(contentsOf: $0) }
        #expect(first[...] == data[0..<4096])
    }

    @Test func tornTailIsRejected() throws {
        let data = Self.sample(10_000, compressible: false)
        let path = try write(data, blockSize: 4096)
        let raw = try Files.read(path)
        try Files.writeAtomically(Array(raw.dropLast(7)), to: path)
        #expect(throws: FileError.self) { try ShardReader(path: path) }
    }

    @Test func binaryReaderRejectsShortAndTrailing() throws {
        var w = BinaryWriter()
        w.u32(7); w.string("key")
        var r = BinaryReader(w.bytes)
        #expect(try r.u32() == 7)
        #expect(try r.string() == "key")
        try r.expectEnd()
        var short = BinaryReader(Array(w.bytes.dropLast()))
        _ = try short.u32()
        #expect(throws: DecodeError.self) { try short.string() }
        var long = BinaryReader(w.bytes + [0])
        _ = try long.u32(); _ = try long.string()
        #expect(throws: DecodeError.self) { try long.expectEnd() }
    }
}

/// Shard files come from disk: damage that keeps the checksums valid (or a crafted file) must
/// fail the read with `corrupt`, never trap on a conversion or serve a block of the wrong length.
@Suite struct ShardFileDamageTests {
    let files = ShardFileTests()

    /// Rewrites the footer's fields and recomputes its checksum, as a forger would.
    func forgeFooter(_ path: String, indexOffset: UInt64? = nil, rawSize: UInt64? = nil) throws {
        var raw = try Files.read(path)
        let f = raw.count - ShardFormat.footerBytes
        var r = BinaryReader(Array(raw[f..<(f + 20)]))
        let io = try r.u64(), count = try r.u32(), rs = try r.u64()
        var w = BinaryWriter()
        w.u64(indexOffset ?? io); w.u32(count); w.u64(rawSize ?? rs)
        let index = Array(raw[Int(io)..<f])
        w.u32(Checksum.crc32c(w.bytes[...], seed: Checksum.crc32c(index)))
        raw.replaceSubrange(f..<(f + 24), with: w.bytes)
        try Files.writeAtomically(raw, to: path)
    }

    @Test(arguments: [UInt64.max, UInt64(1) << 63, UInt64(Int.max)])
    func absurdFooterSizesAreCorrupt(value: UInt64) throws {
        let path = try files.write(ShardFileTests.sample(10_000, compressible: false), blockSize: 4096, name: "raw-\(value)")
        try forgeFooter(path, rawSize: value)
        #expect(throws: FileError.self) { try ShardReader(path: path) }
        let path2 = try files.write(ShardFileTests.sample(10_000, compressible: false), blockSize: 4096, name: "io-\(value)")
        try forgeFooter(path2, indexOffset: value)
        #expect(throws: FileError.self) { try ShardReader(path: path2) }
    }

    /// An uncompressed block's header says it stores fewer bytes than its raw length, with a
    /// checksum that matches: the read must fail, not hand back a short block.
    @Test func rawBlockShorterThanItsLengthIsCorrupt() throws {
        let data = ShardFileTests.sample(10_000, compressible: false)
        let path = try files.write(data, blockSize: 4096, name: "short")
        var raw = try Files.read(path)
        let at = ShardFormat.headerBytes  // block 0's header
        var h = BinaryReader(Array(raw[at..<(at + ShardFormat.blockHeaderBytes)]))
        let rawLen = try h.u32(), stored = try h.u32(), flags = try h.u8()
        #expect(flags == 0 && stored == rawLen)
        var w = BinaryWriter()
        w.u32(rawLen); w.u32(stored - 1); w.u8(0)
        let body = Array(raw[(at + ShardFormat.blockHeaderBytes)..<(at + ShardFormat.blockHeaderBytes + Int(stored) - 1)])
        w.u32(Checksum.crc32c(body[...], seed: Checksum.crc32c(w.bytes[...])))
        raw.replaceSubrange(at..<(at + ShardFormat.blockHeaderBytes), with: w.bytes)
        try Files.writeAtomically(raw, to: path)
        let r = try ShardReader(path: path)
        #expect(throws: FileError.self) { try r.block(0) }
    }
}
