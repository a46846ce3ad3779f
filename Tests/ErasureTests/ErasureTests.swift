import Checksum
import Determinism
import Testing

@testable import Erasure

@Suite struct ReedSolomonTests {
    /// 4+2 survives the loss of any two shards, for every pair.
    @Test(arguments: [0, 1, 5, 4096, 1_000_003])
    func rebuildAfterLosingAnyTwo(size: Int) throws {
        let rs = try ReedSolomon(dataShards: 4, parityShards: 2)
        var rng = SeededRandom(seed: UInt64(size))
        let block = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let shards = rs.encode(block: block)
        #expect(shards.count == 6)
        for a in 0..<6 {
            for b in (a + 1)..<6 {
                var damaged: [[UInt8]?] = shards
                damaged[a] = nil; damaged[b] = nil
                #expect(try rs.decode(shards: damaged, size: size) == block, "lost \(a),\(b) size \(size)")
            }
        }
        var three: [[UInt8]?] = shards
        three[0] = nil; three[3] = nil; three[5] = nil
        #expect(throws: ErasureError.tooFewShards(needed: 4, have: 3)) { try rs.decode(shards: three, size: size) }
    }

    @Test func rejectsBadGeometry() {
        #expect(throws: ErasureError.badGeometry(dataShards: 0, parityShards: 2)) { try ReedSolomon(dataShards: 0, parityShards: 2) }
        #expect(throws: ErasureError.badGeometry(dataShards: 200, parityShards: 100)) { try ReedSolomon(dataShards: 200, parityShards: 100) }
    }

    @Test func checksumVectors() {
        let check = Array("123456789".utf8)
        #expect(Checksum.crc32c(check) == 0xE306_9283)
        #expect(Checksum.crc32(check) == 0xCBF4_3926)
        // Streaming: seeding with the running value continues the checksum.
        #expect(Checksum.crc32c(check[4...], seed: Checksum.crc32c(check[..<4])) == 0xE306_9283)
        #expect(Checksum.crc32(check[4...], seed: Checksum.crc32(check[..<4])) == 0xCBF4_3926)
    }
}
