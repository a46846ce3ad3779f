import ArgumentParser
import Erasure
import Foundation
import Security

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure this machine: the object codec (more workloads to come).", subcommands: [Codec.self])

    struct Codec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Erasure coding, checksums and LZ4 of one block against raw ISA-L, single thread, CPU time.")
        @Option(name: .long, help: "Erasure scheme K+M.") var scheme = "4+2"
        @Option(name: .long, help: "Block size in bytes.") var blockSize = 1 << 20
        @Option(name: .long, help: "Runs per figure (the median is shown).") var reps = 9
        @Option(name: .long, help: "table or json.") var format = "table"

        func validate() throws {
            let p = scheme.split(separator: "+").compactMap { Int($0) }
            guard p.count == 2, p[0] >= 1, p[1] >= 1, p[0] + p[1] <= 255 else {
                throw ValidationError("--scheme must be K+M with K, M ≥ 1 (with no parity there is nothing to encode)")
            }
            guard (64...(64 << 20)).contains(blockSize) else { throw ValidationError("--block-size must be 64 B to 64 MiB") }
            guard (1...99).contains(reps) else { throw ValidationError("--reps must be 1 to 99") }
            guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        }

        func run() throws {
            let p = scheme.split(separator: "+").compactMap { Int($0) }
            var figures = try CodecBench.run(k: p[0], m: p[1], blockSize: blockSize, reps: reps)
            let block = [UInt8](repeating: 7, count: blockSize)
            figures.append(.init(name: "MD5 (OpenSSL), the ETag", bytesPerSecond: Double(blockSize) / CodecBench.measure(reps: reps) { _ = Digest.md5(block) }))
            let raw = figures[0].bytesPerSecond
            if format == "json" {
                let rows = figures.map { ["name": $0.name, "gb_per_s": String(format: "%.2f", $0.bytesPerSecond / 1e9)] }
                print(String(decoding: try JSONEncoder().encode(rows), as: UTF8.self))
                return
            }
            print("codec \(scheme), blocks of \(blockSize) bytes, one thread, CPU time, median of \(reps)")
            for f in figures {
                let g = f.bytesPerSecond / 1e9
                let name = f.name.padding(toLength: 64, withPad: " ", startingAt: 0)
                print("  " + name + String(format: "%7.2f GB/s  %5.0f%% of raw ISA-L", g, 100 * f.bytesPerSecond / raw))
            }
        }
    }
}
