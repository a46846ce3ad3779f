import ArgumentParser
import Erasure
import Foundation
import S3Bench
import Security
import ShardStore

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure: an S3 endpoint under load (any S3 service, not only Stacks), this machine's object codec, or a node's key index.",
        subcommands: [S3.self, Codec.self, Index.self])

    struct S3: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load an S3 endpoint: PUT, GET, mixed or list, as MinIO's warp does.",
            discussion: """
                Workers (--concurrency) each keep one HTTP/1.1 connection and sign with SigV4 (payload unsigned). get, mixed \
                and list write their objects before the clock starts; mixed is GET 45 %, HEAD 30 %, PUT 15 %, DELETE 10 % \
                over each worker's own keys. A progress line each second goes to stderr, a table of the figures too, and \
                the JSON summary to stdout. Afterwards the run deletes what it wrote, and the bucket if it made it.
                """)
        @Option(
            name: .long,
            help: "S3 endpoint http://host:port, or several joined by commas (workers take them in turn); default $AWS_ENDPOINT_URL, then $STACKS_S3_ENDPOINT."
        )
        var endpoint: String?
        @Option(name: .long, help: "Access key; default $AWS_ACCESS_KEY_ID.") var accessKey: String?
        @Option(name: .long, help: "Secret key; default $AWS_SECRET_ACCESS_KEY.") var secretKey: String?
        @Option(name: .long, help: "Region the signature names; default $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1.") var region: String?
        @Option(name: .long, help: "Bucket (made if missing, then removed).") var bucket = "stacks-bench"
        @Option(name: .long, help: "put, get, mixed or list.") var workload = "put"
        @Option(name: .long, help: "Object size, like 4KiB or 1MiB (up to 1 GiB).") var size = "4KiB"
        @Option(name: .long, help: "Concurrent workers (1 to 1024).") var concurrency = 8
        @Option(name: .long, help: "Time measured, like 10s, 500ms or 2m (up to 1 h).") var duration = "10s"
        @Option(name: .long, help: "Objects the workload touches, split over the workers.") var objects = 1000
        @Option(name: .long, help: "Stop after this many operations.") var requests: Int?
        @Option(name: .long, help: "Seed of keys, bodies and the mixed workload's choices (default random).") var seed: UInt64?
        @Option(name: .long, help: "Server processes (pid,pid,…) whose CPU time per operation to report; their children and process groups count too.")
        var serverPids: String?
        @Flag(name: .long, help: "Keep the objects written (and the bucket).") var keep = false

        func run() async throws {
            let env = ProcessInfo.processInfo.environment
            do {
                guard let url = endpoint ?? env["AWS_ENDPOINT_URL"] ?? env["STACKS_S3_ENDPOINT"] else {
                    throw BenchError("give --endpoint or set AWS_ENDPOINT_URL")
                }
                guard let ak = accessKey ?? env["AWS_ACCESS_KEY_ID"], let sk = secretKey ?? env["AWS_SECRET_ACCESS_KEY"] else {
                    throw BenchError("give --access-key and --secret-key or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
                }
                guard let w = BenchConfig.Workload(rawValue: workload) else { throw BenchError("--workload must be put, get, mixed or list") }
                let pids = try (serverPids ?? "").split(separator: ",").map { (p: Substring) throws(BenchError) -> Int32 in
                    guard let v = Int32(p.trimmingCharacters(in: .whitespaces)), v > 0 else { throw BenchError("--server-pids: \(p) is not a pid") }
                    return v
                }
                let config = try BenchConfig(
                    workload: w, size: BenchConfig.parseSize(size), concurrency: concurrency, durationSeconds: BenchConfig.parseDuration(duration),
                    objects: objects, requests: requests)
                let eps = try url.split(separator: ",").map { (u: Substring) throws(BenchError) in try BenchEndpoint(String(u)) }
                guard !eps.isEmpty else { throw BenchError("give --endpoint or set AWS_ENDPOINT_URL") }
                let creds = S3Bench.Credentials(accessKey: ak, secretKey: sk, region: region ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? "us-east-1")
                let options = S3Bench.Options(bucket: bucket, seed: seed ?? UInt64.random(in: 1...UInt64.max), serverPids: pids, keep: keep)
                FileHandle.standardError.write(Data("bench \(w.rawValue) of \(size) objects, \(concurrency) workers, \(duration) against \(url)\n".utf8))
                let s = try await S3Bench.run(config, endpoints: eps, credentials: creds, options: options) { line in
                    FileHandle.standardError.write(Data((line + "\n").utf8))
                }
                FileHandle.standardError.write(Data(Self.table(s).utf8))
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                print(String(decoding: try e.encode(s), as: UTF8.self))
            } catch let e as BenchError {
                throw CLIError(e.description)
            }
        }

        static func table(_ s: BenchSummary) -> String {
            let heads = ["ops/s", "MiB/s", "mean ms", "p50 ms", "p99 ms", "max ms", "errors"]
            var out = "op     " + heads.map { String(repeating: " ", count: max(0, 10 - $0.count)) + $0 }.joined() + "\n"
            for f in s.operations + (s.operations.count > 1 ? [s.total] : []) {
                out += f.op.padding(toLength: 7, withPad: " ", startingAt: 0)
                out += String(
                    format: "%10.1f%10.2f%10.2f%10.2f%10.2f%10.1f%10d\n", f.opsPerSecond, f.mibPerSecond, f.meanMs, f.p50Ms, f.p99Ms, f.maxMs, f.errors)
            }
            for (k, n) in s.errorKinds.sorted(by: { $0.key < $1.key }) { out += "  \(n) × \(k)\n" }
            if let c = s.serverCPUMsPerOp { out += String(format: "server CPU %.2f ms per operation\n", c) }
            return out
        }
    }

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

    struct Index: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A shard store of many keys: commits, start-up with the sorted index, the scan that rebuilds it, listing.")
        @Option(name: .long, help: "Keys to write (1 to 10,000,000).") var keys = 100_000
        @Option(name: .long, help: "Directory for the store (made, then removed); default a new one under $TMPDIR or /var/tmp.") var dir: String?
        @Flag(name: .long, help: "Empty the page cache before each start-up (needs root), as after a reboot.") var dropCaches = false
        @Option(name: .long, help: "table or json.") var format = "table"

        func validate() throws {
            guard (1...10_000_000).contains(keys) else { throw ValidationError("--keys must be 1 to 10,000,000") }
            guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        }

        func run() throws {
            let root = dir ?? "\(ProcessInfo.processInfo.environment["TMPDIR"] ?? "/var/tmp")/stacks-bench-index-\(getpid())"
            guard !FileManager.default.fileExists(atPath: root) else { throw ValidationError("\(root) exists: give a new directory") }
            defer { try? FileManager.default.removeItem(atPath: root) }
            let f = try IndexBench.run(root: root, keys: keys, dropCaches: dropCaches) { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
            if format == "json" {
                let row: [String: Double] = [
                    "keys": Double(f.keys), "commits_per_s": f.commitsPerSecond, "start_s": f.startSeconds, "rebuild_s": f.rebuildSeconds,
                    "list_keys_per_s": f.listKeysPerSecond, "index_bytes": Double(f.indexBytes), "cold": f.cold ? 1 : 0,
                ]
                print(String(decoding: try JSONEncoder().encode(row), as: UTF8.self))
                return
            }
            print("key index, \(f.keys) keys, \(f.cold ? "page cache emptied before each start-up" : "warm page cache")")
            print(String(format: "  commits (shard file + index)        %10.0f /s", f.commitsPerSecond))
            print(String(format: "  start-up reading the index          %10.3f s", f.startSeconds))
            print(String(format: "  start-up rebuilding it by a scan    %10.3f s", f.rebuildSeconds))
            print(String(format: "  listing, pages of 1,000             %10.0f keys/s", f.listKeysPerSecond))
            print(String(format: "  index on disk                       %10.1f MiB", Double(f.indexBytes) / 1_048_576))
        }
    }
}
