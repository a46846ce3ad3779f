import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import S3
import Synchronization

/// `stacks bench s3`: a load generator for any S3 endpoint, as MinIO's warp. Workers each keep
/// one connection; objects are written before the clock starts where the workload reads them;
/// only the timed phase is measured; cleanup deletes what the run wrote (and the bucket, if the
/// run made it).
public enum S3Bench {
    public struct Credentials: Sendable {
        public var accessKey: String
        public var secretKey: String
        public var region: String
        public init(accessKey: String, secretKey: String, region: String) { (self.accessKey, self.secretKey, self.region) = (accessKey, secretKey, region) }
    }

    public struct Options: Sendable {
        public var bucket: String
        public var seed: UInt64
        /// Processes whose CPU time (with their children's and their process groups') is read
        /// before and after the timed phase.
        public var serverPids: [Int32]
        /// Leave the objects (and a bucket the run made) in place.
        public var keep: Bool
        public init(bucket: String, seed: UInt64, serverPids: [Int32] = [], keep: Bool = false) {
            (self.bucket, self.seed, self.serverPids, self.keep) = (bucket, seed, serverPids, keep)
        }
    }

    /// Runs the benchmark; `progress` gets a line each second of the timed phase and notes on
    /// the phases around it.
    public static func run(
        _ config: BenchConfig, endpoints: [BenchEndpoint], credentials: Credentials, options: Options, progress: @escaping @Sendable (String) -> Void
    ) async throws -> BenchSummary {
        let run = Run(config, endpoints, credentials, options)
        let created: Bool
        do { created = try await run.ensureBucket() } catch let e as BenchError { throw e } catch {
            throw BenchError("cannot reach \(endpoints[0].url): \(error)")
        }
        if config.prefilled {
            progress("writing \(config.objectsPerWorker * config.concurrency) objects of \(config.size) bytes before the clock starts")
            do { try await run.prefill() } catch {
                if !options.keep {
                    await run.cleanup((0..<config.concurrency).map { WorkerPlan(config: config, worker: $0, seed: options.seed) }, bucketToo: created)
                }
                throw error
            }
        }
        let cpuBefore = ProcessCPU.ticks(options.serverPids)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(config.durationSeconds * 1000))
        let ticker = Task {
            var last = (0, 0)
            for t in 1... {
                guard (try? await Task.sleep(for: .seconds(1))) != nil else { return }
                let (ops, bytes, errors) = (run.ops.load(ordering: .relaxed), run.bytes.load(ordering: .relaxed), run.errors.load(ordering: .relaxed))
                progress(
                    String(
                        format: "%4ds  %8.1f ops/s  %8.2f MiB/s  %6d ops  %4d errors", t, Double(ops - last.0), Double(bytes - last.1) / 1_048_576.0, ops,
                        errors
                    ))
                last = (ops, bytes)
            }
        }
        let plans = await withTaskGroup(of: WorkerPlan.self) { group in
            for w in 0..<config.concurrency { group.addTask { await run.timed(worker: w, until: deadline) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        ticker.cancel()
        let seconds = (ContinuousClock.now - start) / .milliseconds(1) / 1000
        let cpuAfter = ProcessCPU.ticks(options.serverPids)
        var summary = run.summary(seconds: seconds)
        if let a = cpuBefore, let b = cpuAfter, summary.total.count > 0 {
            summary.serverCPUMsPerOp = Double(b - a) * 1000 / Double(ProcessCPU.ticksPerSecond) / Double(summary.total.count)
        }
        if !options.keep {
            progress("deleting what the run wrote")
            await run.cleanup(plans, bucketToo: created)
        }
        return summary
    }
}

/// A run's shared state: the plan, counters for the progress line, and the figures.
final class Run: Sendable {
    let config: BenchConfig
    /// Worker w talks to endpoints[w % count] (as warp spreads over several hosts).
    let endpoints: [BenchEndpoint]
    let credentials: S3Bench.Credentials
    let options: S3Bench.Options
    let prefix: String
    /// What a PUT sends: `size` bytes of this (repeated when larger than 1 MiB).
    let chunk: ByteBuffer
    let ops = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let issued = Atomic<Int>(0)
    let figures = Mutex<Figures>(Figures())

    struct Figures {
        var latency: [BenchOp: Histogram<UInt64>] = [:]
        var counts: [BenchOp: (ok: Int, errors: Int, bytes: Int)] = [:]
        var errorKinds: [String: Int] = [:]
    }

    init(_ config: BenchConfig, _ endpoints: [BenchEndpoint], _ credentials: S3Bench.Credentials, _ options: S3Bench.Options) {
        precondition(!endpoints.isEmpty)
        (self.config, self.endpoints, self.credentials, self.options) = (config, endpoints, credentials, options)
        prefix = "stacks-bench-\(String(options.seed, radix: 16))/"
        var random = SeededRandomBytes(seed: options.seed)
        chunk = ByteBuffer(bytes: random.bytes(min(config.size, 1 << 20)))
    }

    func key(_ worker: Int, _ index: Int) -> String { "/\(options.bucket)/\(prefix)\(worker)/\(index)" }

    /// Sends one request signed for this run's credentials.
    func endpoint(_ worker: Int) -> BenchEndpoint { endpoints[worker % endpoints.count] }

    func request(
        _ send: BenchSender, _ signer: SigV4Signer, _ method: HTTPMethod,
        _ path: String, query: [(String, String)] = [], length: Int = 0, wantBody: Bool = false
    ) async throws -> BenchResponse {
        let s = signer.sign(
            method: method.rawValue, path: path, query: query, host: send.endpoint.hostHeader, epochSeconds: Int64(Date().timeIntervalSince1970))
        return try await send.send(method, s.target, s.headers, length, length > 0 ? chunk : nil, wantBody)
    }

    func signer() -> SigV4Signer { SigV4Signer(accessKey: credentials.accessKey, secret: credentials.secretKey, region: credentials.region) }

    /// Makes the bucket unless it exists; true when this run made it.
    func ensureBucket() async throws -> Bool {
        let signer = signer()
        return try await BenchConnection.with(endpoints[0]) { send in
            let head = try await self.request(send, signer, .HEAD, "/\(options.bucket)")
            switch head.status {
            case 200: return false
            case 404:
                let put = try await self.request(send, signer, .PUT, "/\(options.bucket)", wantBody: true)
                guard put.status == 200 else { throw BenchError("creating bucket \(options.bucket): HTTP \(put.status) \(ListPage.errorCode(put.body) ?? "")") }
                return true
            default: throw BenchError("bucket \(options.bucket): HTTP \(head.status) (check the endpoint and the keys)")
            }
        }
    }

    /// Writes every worker's keys before the clock starts; a key that fails three times ends the run.
    func prefill() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<config.concurrency {
                group.addTask {
                    let signer = self.signer()
                    var i = 0
                    var failures = 0
                    while i < self.config.objectsPerWorker {
                        do {
                            try await BenchConnection.with(self.endpoint(w)) { send in
                                while i < self.config.objectsPerWorker {
                                    let r = try await self.request(send, signer, .PUT, self.key(w, i), length: self.config.size)
                                    guard r.status == 200 else { throw BenchError("HTTP \(r.status) \(ListPage.errorCode(r.body) ?? "")") }
                                    i += 1
                                    if r.close { return }
                                }
                            }
                        } catch {
                            failures += 1
                            if failures >= 3 { throw BenchError("writing the objects before the clock: \(error)") }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// One worker's timed phase: operations until the deadline (or the request cap), reconnecting
    /// after a failed connection with a 50 ms pause so a down endpoint is not spun on.
    func timed(worker w: Int, until deadline: ContinuousClock.Instant) async -> WorkerPlan {
        var plan = WorkerPlan(config: config, worker: w, seed: options.seed)
        let signer = signer()
        var token: String?
        func more() -> Bool {
            guard ContinuousClock.now < deadline else { return false }
            if let cap = config.requests { return issued.add(1, ordering: .relaxed).newValue <= cap }
            return true
        }
        while more() {
            do {
                try await BenchConnection.with(endpoint(w)) { send in
                    var first = true
                    while first || more() {
                        first = false
                        let (op, kw, ki) = plan.nextOp()
                        let t0 = ContinuousClock.now
                        let r: BenchResponse
                        let method: HTTPMethod = [.put: .PUT, .get: .GET, .head: .HEAD, .delete: .DELETE, .list: .GET][op]!
                        if op == .list {
                            var q = [("list-type", "2"), ("max-keys", "1000"), ("prefix", prefix)]
                            if let token { q.append(("continuation-token", token)) }
                            r = try await request(send, signer, .GET, "/\(options.bucket)", query: q, wantBody: true)
                            token = r.status == 200 ? ListPage.continuation(r.body) : nil
                        } else {
                            r = try await request(send, signer, method, key(kw, ki), length: op == .put ? config.size : 0)
                        }
                        let us = UInt64(max(0, (ContinuousClock.now - t0) / .microseconds(1)))
                        record(op, r, micros: us)
                        if r.close { return }
                    }
                }
            } catch {
                note(error: "connection: \(error)", op: nil)
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        return plan
    }

    func record(_ op: BenchOp, _ r: BenchResponse, micros: UInt64) {
        let ok =
            switch op {
            case .delete: r.status == 204 || r.status == 200
            case .get: r.status == 200 && r.bytes == config.size
            default: r.status == 200
            }
        guard ok else {
            let kind = r.status == 200 ? "GET of \(r.bytes) bytes, not \(config.size)" : "HTTP \(r.status) \(ListPage.errorCode(r.body) ?? "")"
            return note(error: kind, op: op)
        }
        let moved = op == .put ? config.size : op == .get ? r.bytes : 0
        ops.add(1, ordering: .relaxed)
        bytes.add(moved, ordering: .relaxed)
        figures.withLock { f in
            f.latency[op, default: Histogram(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)]
                .record(min(micros, 600_000_000))
            f.counts[op, default: (0, 0, 0)].ok += 1
            f.counts[op, default: (0, 0, 0)].bytes += moved
        }
    }

    func note(error kind: String, op: BenchOp?) {
        errors.add(1, ordering: .relaxed)
        figures.withLock { f in
            f.errorKinds[kind.trimmingCharacters(in: .whitespaces), default: 0] += 1
            if let op { f.counts[op, default: (0, 0, 0)].errors += 1 }
        }
    }

    func summary(seconds: Double) -> BenchSummary {
        figures.withLock { f in
            func figure(_ op: String, _ h: Histogram<UInt64>?, _ c: (ok: Int, errors: Int, bytes: Int)) -> OpFigures {
                let ms = { (p: Double) in Double(h?.valueAtPercentile(p) ?? 0) / 1000 }
                return OpFigures(
                    op: op, count: c.ok, errors: c.errors, opsPerSecond: Double(c.ok) / seconds, mibPerSecond: Double(c.bytes) / 1_048_576 / seconds,
                    meanMs: (h?.mean ?? 0) / 1000, p50Ms: ms(50), p90Ms: ms(90), p99Ms: ms(99), p999Ms: ms(99.9), maxMs: Double(h?.max ?? 0) / 1000)
            }
            let used = f.counts.keys.sorted()
            var all: Histogram<UInt64>?
            for h in f.latency.values { all == nil ? (all = h) : all!.add(h) }
            let sum = f.counts.values.reduce((ok: 0, errors: 0, bytes: 0)) { ($0.ok + $1.ok, $0.errors + $1.errors, $0.bytes + $1.bytes) }
            let total = figure(used.count == 1 ? used[0].rawValue : "TOTAL", all, sum)
            return BenchSummary(
                endpoint: endpoints.map(\.url).joined(separator: ","), bucket: options.bucket, workload: config.workload.rawValue, objectSize: config.size,
                concurrency: config.concurrency,
                seconds: seconds, operations: used.map { figure($0.rawValue, f.latency[$0], f.counts[$0]!) }, total: total, errorKinds: f.errorKinds,
                serverCPUMsPerOp: nil)
        }
    }

    /// Deletes the keys each worker may have left, then the bucket if the run made it.
    func cleanup(_ plans: [WorkerPlan], bucketToo: Bool) async {
        await withTaskGroup(of: Void.self) { group in
            for plan in plans {
                group.addTask {
                    let signer = self.signer()
                    var left = plan.leftover[...]
                    var attempts = 0
                    while !left.isEmpty, attempts < 3 {
                        attempts += 1
                        try? await BenchConnection.with(self.endpoint(plan.worker)) { send in
                            while let i = left.first {
                                let r = try await self.request(send, signer, .DELETE, self.key(plan.worker, i))
                                left = left.dropFirst()
                                if r.close { return }
                            }
                        }
                    }
                }
            }
        }
        guard bucketToo else { return }
        let signer = signer()
        _ = try? await BenchConnection.with(endpoints[0]) { send in try await self.request(send, signer, .DELETE, "/\(self.options.bucket)") }
    }
}

/// Random bytes for object bodies (incompressible, so LZ4 does not flatter a store).
struct SeededRandomBytes {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        for i in 0..<n {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            out[i] = UInt8(truncatingIfNeeded: state)
        }
        return out
    }
}

/// CPU time of processes from /proc: the given pids, their children and the members of the
/// process groups they lead, in clock ticks.
enum ProcessCPU {
    static let ticksPerSecond = Int(sysconf(Int32(_SC_CLK_TCK)))

    static func ticks(_ pids: [Int32]) -> Int? {
        guard !pids.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        let roots = Set(pids)
        var total = 0
        for e in entries {
            guard let pid = Int32(e), let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // Fields after "pid (comm)": state ppid pgrp … utime(14) stime(15), 1-based overall.
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 12, let ppid = Int32(f[1]), let pgrp = Int32(f[2]), let utime = Int(f[11]), let stime = Int(f[12]) else { continue }
            if roots.contains(pid) || roots.contains(ppid) || roots.contains(pgrp) { total += utime + stime }
        }
        return total
    }
}
