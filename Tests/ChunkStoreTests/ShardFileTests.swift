import Foundation
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
        while i < data.count { // uneven appends cross block boundaries
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
        #expect(throws: ChunkStoreError.self) { try r.forEachSlice(of: 0..<10_000) { _ in } }
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
        #expect(throws: ChunkStoreError.self) { try ShardReader(path: path) }
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
        #expect(throws: ChunkStoreError.self) { try short.string() }
        var long = BinaryReader(w.bytes + [0])
        _ = try long.u32(); _ = try long.string()
        #expect(throws: ChunkStoreError.self) { try long.expectEnd() }
    }
}
