import Checksum
import Determinism
import Simulation
import Support
import Testing

@testable import Erasure

@Suite struct StripeCodecTests {
    struct Encoded {
        var header: StripeHeader
        var shards: [[UInt8]]
        var sums: [UInt32]
    }

    static func encode(_ object: [UInt8], code: ReedSolomon, blockSize: Int, compress: Bool, pieces: inout SeededRandom) -> [Encoded] {
        var enc = StripeEncoder(code: code, blockSize: blockSize, compress: compress)
        var out: [Encoded] = []
        let keep: (Stripe) -> Void = { s in out.append(Encoded(header: s.header, shards: (0..<s.count).map { Array(s.shard($0)) }, sums: s.checksums)) }
        var at = 0
        while at < object.count {  // pieces of any size, as the network cuts a body
            let n = min(object.count - at, 1 + Int(pieces.next() % UInt64(2 * blockSize)))
            enc.feed(Array(object[at..<(at + n)]), keep)
            at += n
        }
        enc.finish(keep)
        return out
    }

    /// Objects of every shape (empty, one byte, block-aligned, ragged; random or compressible)
    /// through every scheme: losing or corrupting any m shards of each stripe still gives the
    /// object back byte for byte, every corrupted shard is reported, and one more loss is refused.
    @Test func survivesAnyMLossesOrCorruptions() throws {
        var stats = (stripes: 0, compressed: 0, corrupt: 0)
        let failures = Seeds.each(0..<200) { seed in
            var rng = SeededRandom(seed: seed)
            let schemes = [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (4, 2), (8, 4)]
            let (k, m) = schemes[Int(rng.next() % UInt64(schemes.count))]
            let code = try! ReedSolomon(dataShards: k, parityShards: m)
            let blockSize = [64, 1000, 4096][Int(rng.next() % 3)]
            let size = [0, 1, blockSize, 3 * blockSize, Int(rng.next() % UInt64(5 * blockSize))][Int(rng.next() % 5)]
            let text = rng.next() % 2 == 0
            let object = (0..<size).map { i in text ? UInt8(ascii: "a") + UInt8(i % 7) : UInt8(truncatingIfNeeded: rng.next()) }
            let stripes = Self.encode(object, code: code, blockSize: blockSize, compress: rng.next() % 4 != 0, pieces: &rng)
            var failures: [String] = []
            if stripes.count != (size + blockSize - 1) / blockSize { failures.append("\(stripes.count) stripes for \(size) bytes") }
            var back: [UInt8] = []
            let decoder = StripeDecoder(code: code)
            for (i, s) in stripes.enumerated() {
                stats.stripes += 1
                if s.header.compressed { stats.compressed += 1 }
                if s.header.index != UInt32(i) { failures.append("stripe \(i) numbered \(s.header.index)") }
                // Data shards are the stored bytes: a healthy uncompressed read is a concatenation.
                if !s.header.compressed,
                    Array(s.shards.prefix(k).joined().prefix(Int(s.header.rawLength))) != Array(object[(i * blockSize)...].prefix(blockSize))
                {
                    failures.append("stripe \(i): data shards are not the object's bytes")
                }
                var shards: [[UInt8]?] = s.shards
                var damaged: Set<Int> = []
                for _ in 0..<m {
                    let victim = Int(rng.next() % UInt64(k + m))
                    if rng.next() % 2 == 0 {
                        shards[victim] = nil
                    } else if shards[victim] != nil && !s.shards[victim].isEmpty {
                        shards[victim]![Int(rng.next() % UInt64(s.shards[victim].count))] ^= 1 << (rng.next() % 8)
                        damaged.insert(victim)
                    }
                }
                damaged = damaged.filter { shards[$0] != nil && shards[$0] != s.shards[$0] }  // the same bit flipped twice is no damage
                do {
                    let (block, corrupt) = try decoder.decode(s.header, shards: shards, checksums: s.sums)
                    back += block
                    stats.corrupt += corrupt.count
                    if Set(corrupt) != damaged { failures.append("stripe \(i): reported \(corrupt), damaged \(damaged.sorted())") }
                } catch { failures.append("stripe \(i) with \(m) losses: \(error)") }
                // One loss more than m is refused, never guessed.
                var tooFew: [[UInt8]?] = s.shards
                for j in 0...m { tooFew[(i + j) % (k + m)] = nil }
                if (try? decoder.decode(s.header, shards: tooFew, checksums: s.sums)) != nil { failures.append("stripe \(i) decoded from \(k - 1) shards") }
            }
            if back != object { failures.append("\(k)+\(m), \(size) bytes in blocks of \(blockSize): object differs") }
            return failures
        }
        #expect(failures.isEmpty, "\(Seeds.report(failures))")
        print("stripe-codec: 200 seeds, \(stats.stripes) stripes (\(stats.compressed) compressed), \(stats.corrupt) corrupt shards caught")
    }

    /// Blocks of 128 KiB and more are probed on their first 64 KiB: text is compressed, random
    /// bytes are stored raw, and both come back exact.
    @Test func bigBlocksAreProbedBeforeCompressing() throws {
        let code = try ReedSolomon(dataShards: 4, parityShards: 2)
        var rng = SeededRandom(seed: 1)
        let random = (0..<(256 << 10)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let text = (0..<(256 << 10)).map { i in UInt8(ascii: "a") + UInt8((i / 3 + Int(rng.next() % 2)) % 20) }
        for (bytes, compressed) in [(random, false), (text, true)] {
            let stripes = Self.encode(bytes, code: code, blockSize: 256 << 10, compress: true, pieces: &rng)
            #expect(stripes.count == 1 && stripes[0].header.compressed == compressed)
            let s = stripes[0]
            var shards: [[UInt8]?] = s.shards
            shards[1] = nil
            #expect(try StripeDecoder(code: code).decode(s.header, shards: shards, checksums: s.sums).block == bytes)
        }
    }

    @Test func headersFromOutsideAreBounded() throws {
        let h = StripeHeader(index: 3, rawLength: 1000, storedLength: 400, compressed: true)
        var w = BinaryWriter()
        h.encode(&w)
        #expect(w.bytes.count == StripeHeader.encodedSize)
        var r = BinaryReader(w.bytes)
        #expect(try StripeHeader(reading: &r) == h)
        for bad in [
            StripeHeader(index: 0, rawLength: UInt32(StripeHeader.maxBlock + 1), storedLength: UInt32(StripeHeader.maxBlock + 1), compressed: false),
            StripeHeader(index: 0, rawLength: 10, storedLength: 11, compressed: false),
            StripeHeader(index: 0, rawLength: 10, storedLength: 10, compressed: true),
        ] {
            var w = BinaryWriter()
            bad.encode(&w)
            var r = BinaryReader(w.bytes)
            #expect(throws: DecodeError.self) { try StripeHeader(reading: &r) }
            let code = try ReedSolomon(dataShards: 2, parityShards: 1)
            #expect(throws: ErasureError.self) { try StripeDecoder(code: code).decode(bad, shards: [[], [], []], checksums: [0, 0, 0]) }
        }
    }
}
