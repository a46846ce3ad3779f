import CISAL
import Checksum
import Determinism

#if canImport(Glibc)
import Glibc
#endif

/// Figures for `stacks bench codec`: the codec's steps against raw ISA-L in the same process,
/// single thread, CPU time of this thread, median of `reps` runs of about 50 ms each.
public enum CodecBench {
    public struct Figure: Sendable {
        public var name: String
        /// Object bytes per second of CPU.
        public var bytesPerSecond: Double
        public init(name: String, bytesPerSecond: Double) { self.name = name; self.bytesPerSecond = bytesPerSecond }
    }

    /// Thread CPU seconds `body` takes per call, the median of `reps` runs.
    public static func measure(reps: Int = 9, _ body: () -> Void) -> Double {
        func cpu() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        var calls = 1
        while true {  // calibrate: enough calls for about 50 ms
            let t0 = cpu()
            for _ in 0..<calls { body() }
            let dt = cpu() - t0
            if dt >= 0.05 || calls >= 1 << 20 { break }
            calls = dt <= 0.001 ? calls * 16 : max(calls + 1, Int(Double(calls) * 0.06 / dt))
        }
        var runs: [Double] = []
        for _ in 0..<reps {
            let t0 = cpu()
            for _ in 0..<calls { body() }
            runs.append((cpu() - t0) / Double(calls))
        }
        return runs.sorted()[reps / 2]
    }

    /// Encode and decode of one `blockSize` block with `k`+`m`, on random (incompressible) and
    /// text-like (compressible) bytes.
    public static func run(k: Int, m: Int, blockSize: Int, reps: Int = 9) throws(ErasureError) -> [Figure] {
        let code = try ReedSolomon(dataShards: k, parityShards: m)
        var rng = SeededRandom(seed: 1)
        let random = (0..<blockSize).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        // Log-like text: words drawn at random from a small vocabulary (LZ4 keeps about 40% of it).
        let words = "GET PUT HEAD /bucket/ key- 200 404 HTTP/1.1 2026-12-03T15:04:05Z us-east-1 application/octet-stream ETag user-agent boto3 aws-cli"
            .split(separator: " ").map { Array($0.utf8) + [32] }
        var text: [UInt8] = []
        while text.count < blockSize {
            let r = rng.next()
            text += words[Int(r % UInt64(words.count))]
            if r >> 60 == 0 { text += Array(String(r % 100_000).utf8) + [10] }
        }
        text.removeLast(text.count - blockSize)
        var figures: [Figure] = []
        func add(_ name: String, _ seconds: Double) { figures.append(Figure(name: name, bytesPerSecond: Double(blockSize) / seconds)) }

        // Raw ISA-L: ec_encode_data over prepared buffers, nothing else.
        let length = code.shardLength(forBlockOf: blockSize)
        var stripe = [UInt8](repeating: 0, count: length * (k + m))
        stripe.replaceSubrange(0..<blockSize, with: random)
        let matrix = ISAL.cauchyMatrix(k: k, m: m)
        var tables = ISAL.tables(k: k, rows: m, matrix: Array(matrix[(k * k)...]))
        stripe.withUnsafeMutableBufferPointer { s in
            var ins = (0..<k).map { Optional(s.baseAddress! + $0 * length) }
            var outs = (0..<m).map { Optional(s.baseAddress! + (k + $0) * length) }
            add("raw ISA-L ec_encode_data \(k)+\(m)", measure(reps: reps) { ec_encode_data(Int32(length), Int32(k), Int32(m), &tables, &ins, &outs) })
            add("ReedSolomon.encodeParity (in place)", measure(reps: reps) { code.encodeParity(stripe: s, length: length) })
            add("CRC32C of the k+m shards", measure(reps: reps) { _ = Checksum.crc32c(UnsafeRawBufferPointer(s)) } * Double(blockSize) / Double(s.count))
        }
        for (label, bytes, compress) in [("random, LZ4 off", random, false), ("random, LZ4 tried", random, true), ("text, LZ4", text, true)] {
            var enc = StripeEncoder(code: code, blockSize: blockSize, compress: compress)
            var sink: UInt32 = 0
            add("StripeEncoder \(label) (copy in, encode, CRC32C)", measure(reps: reps) { enc.feed(bytes) { sink ^= $0.checksums[0] } })
            // Decode: healthy (data shards only) and with the first min(m, k) data shards lost.
            var kept: (StripeHeader, [[UInt8]], [UInt32])?
            enc.feed(bytes) { s in kept = (s.header, (0..<s.count).map { Array(s.shard($0)) }, s.checksums) }
            let (header, shards, sums) = kept!
            let decoder = StripeDecoder(code: code)
            add("StripeDecoder \(label), healthy", measure(reps: reps) { _ = try? decoder.decode(header, shards: shards, checksums: sums) })
            var lost: [[UInt8]?] = shards
            for i in 0..<min(m, k) { lost[i] = nil }
            add("StripeDecoder \(label), \(min(m, k)) data shards lost", measure(reps: reps) { _ = try? decoder.decode(header, shards: lost, checksums: sums) })
        }
        return figures
    }
}
