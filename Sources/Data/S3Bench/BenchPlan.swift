import Determinism
import Foundation

/// What `stacks bench s3` runs, checked: every number from the command line is bounded here
/// before the runner does arithmetic with it.
public struct BenchConfig: Sendable, Equatable {
    public enum Workload: String, CaseIterable, Sendable {
        /// PUTs of new keys, overwriting once a worker has written its share of `objects`.
        case put
        /// GETs of `objects` objects written before the clock starts.
        case get
        /// warp's mix over each worker's own keys: GET 45 %, HEAD 30 %, PUT 15 %, DELETE 10 %.
        case mixed
        /// ListObjectsV2 pages (1000 keys each) over `objects` objects written before the clock starts.
        case list
    }

    public static let maxConcurrency = 1024
    public static let maxSize = 1 << 30
    public static let maxObjects = 1_000_000
    public static let maxDuration = 3600.0

    public var workload: Workload
    public var size: Int
    public var concurrency: Int
    public var durationSeconds: Double
    /// Total objects the workload touches (split over the workers; at least one each).
    public var objects: Int
    /// Stop after this many timed operations, if given.
    public var requests: Int?

    public init(workload: Workload, size: Int, concurrency: Int, durationSeconds: Double, objects: Int, requests: Int? = nil) throws(BenchError) {
        guard (1...Self.maxConcurrency).contains(concurrency) else { throw BenchError("concurrency must be 1 to \(Self.maxConcurrency)") }
        guard (0...Self.maxSize).contains(size) else { throw BenchError("object size must be 0 B to 1 GiB") }
        guard durationSeconds.isFinite, durationSeconds >= 0.1, durationSeconds <= Self.maxDuration else {
            throw BenchError("duration must be 0.1 s to 1 h")
        }
        guard (1...Self.maxObjects).contains(objects) else { throw BenchError("objects must be 1 to \(Self.maxObjects)") }
        if let r = requests, !(1...100_000_000).contains(r) { throw BenchError("requests must be 1 to 100000000") }
        (self.workload, self.size, self.concurrency, self.durationSeconds, self.objects, self.requests) =
            (workload, size, concurrency, durationSeconds, objects, requests)
    }

    /// Keys each worker owns: `objects` split evenly, at least one.
    public var objectsPerWorker: Int { max(1, objects / concurrency) }

    /// Objects written before the clock starts (none for put).
    public var prefilled: Bool { workload != .put }

    /// "4KiB", "1MiB", "1.5MB", "512" (bytes), up to 1 GiB.
    public static func parseSize(_ s: String) throws(BenchError) -> Int {
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("K", 1024), ("M", 1_048_576),
            ("G", 1_073_741_824),
            ("B", 1),
        ]
        let t = s.trimmingCharacters(in: .whitespaces)
        var number = Substring(t)
        var scale = 1.0
        for (u, f) in units where t.hasSuffix(u) {
            (number, scale) = (t.dropLast(u.count), f)
            break
        }
        guard let v = Double(number.trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0, v * scale <= Double(maxSize) else {
            throw BenchError("size \(s) is not a size from 0 B to 1 GiB (like 4KiB or 1MiB)")
        }
        return Int(v * scale)
    }

    /// "10", "10s", "500ms", "2m".
    public static func parseDuration(_ s: String) throws(BenchError) -> Double {
        let t = s.trimmingCharacters(in: .whitespaces)
        let (number, scale): (Substring, Double) =
            t.hasSuffix("ms") ? (t.dropLast(2), 0.001) : t.hasSuffix("s") ? (t.dropLast(), 1) : t.hasSuffix("m") ? (t.dropLast(), 60) : (Substring(t), 1)
        guard let v = Double(number), v.isFinite, v >= 0, v * scale <= maxDuration else { throw BenchError("duration \(s) is not like 10s, 500ms or 2m") }
        return v * scale
    }
}

public struct BenchError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One S3 operation of a benchmark.
public enum BenchOp: String, CaseIterable, Sendable, Codable, Comparable {
    case put = "PUT", get = "GET", head = "HEAD", delete = "DELETE", list = "LIST"
    public static func < (a: BenchOp, b: BenchOp) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// The next operation of one worker, pure: it owns keys `0..<objectsPerWorker` of its slice and,
/// for the mixed workload, knows which of them exist, so a GET, HEAD or DELETE only names a key
/// that its own PUT (or the prefill) wrote and a 404 is a real error.
public struct WorkerPlan: Sendable {
    public let workload: BenchConfig.Workload
    public let worker: Int
    public let keys: Int
    let workers: Int
    var random: SeededRandom
    var next = 0
    /// Mixed: the worker's keys that exist, and where each sits in `live` (-1: absent).
    var live: [Int]
    var slot: [Int]
    /// Put: how many keys it wrote.
    var written = 0

    public init(config: BenchConfig, worker: Int, seed: UInt64) {
        workload = config.workload
        self.worker = worker
        keys = config.objectsPerWorker
        workers = config.concurrency
        random = SeededRandom(seed: seed &+ UInt64(worker) &* 0x9E37_79B9_7F4A_7C15)
        live = config.workload == .mixed ? Array(0..<keys) : []
        slot = live
    }

    /// The operation and its key (worker, index); for list, the key is unused.
    public mutating func nextOp() -> (op: BenchOp, worker: Int, index: Int) {
        switch workload {
        case .put:
            let i = next % keys
            next += 1
            written = max(written, i + 1)
            return (.put, worker, i)
        case .get:
            return (.get, Int.random(in: 0..<workers, using: &random), Int.random(in: 0..<keys, using: &random))
        case .list:
            return (.list, worker, 0)
        case .mixed:
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < 15 || live.isEmpty {
                let i = Int.random(in: 0..<keys, using: &random)
                if slot[i] < 0 {
                    slot[i] = live.count
                    live.append(i)
                }
                return (.put, worker, i)
            }
            let i = live[Int.random(in: 0..<live.count, using: &random)]
            if roll < 25 {
                // Keep one key alive so reads always have a target.
                if live.count == 1 { return (.get, worker, i) }
                let last = live.removeLast()
                if last != i { (live[slot[i]], slot[last]) = (last, slot[i]) }
                slot[i] = -1
                return (.delete, worker, i)
            }
            return (roll < 70 ? .get : .head, worker, i)
        }
    }

    /// The keys that may exist when the run ends (what cleanup deletes).
    public var leftover: [Int] {
        switch workload {
        case .put: Array(0..<written)
        case .mixed: live.sorted()
        case .get, .list: Array(0..<keys)
        }
    }
}

/// Counts and latencies of one operation kind; latencies in microseconds.
public struct OpFigures: Codable, Sendable, Equatable {
    /// PUT, GET, HEAD, DELETE, LIST, or TOTAL for the sum of several.
    public var op: String
    public var count: Int
    public var errors: Int
    public var opsPerSecond: Double
    public var mibPerSecond: Double
    public var meanMs: Double
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var p999Ms: Double
    public var maxMs: Double

    enum CodingKeys: String, CodingKey {
        case op, count, errors
        case opsPerSecond = "ops_per_s"
        case mibPerSecond = "mib_per_s"
        case meanMs = "mean_ms"
        case p50Ms = "p50_ms"
        case p90Ms = "p90_ms"
        case p99Ms = "p99_ms"
        case p999Ms = "p999_ms"
        case maxMs = "max_ms"
    }
}

/// The JSON summary `stacks bench s3` prints at the end.
public struct BenchSummary: Codable, Sendable {
    public var endpoint: String
    public var bucket: String
    public var workload: String
    public var objectSize: Int
    public var concurrency: Int
    public var seconds: Double
    public var operations: [OpFigures]
    public var total: OpFigures
    /// Error kind ("HTTP 503 SlowDown", "connection: …") → count.
    public var errorKinds: [String: Int]
    /// CPU the given server processes spent per timed operation, if their pids were given.
    public var serverCPUMsPerOp: Double?

    enum CodingKeys: String, CodingKey {
        case endpoint, bucket, workload, concurrency, seconds, operations, total
        case objectSize = "object_size"
        case errorKinds = "error_kinds"
        case serverCPUMsPerOp = "server_cpu_ms_per_op"
    }
}

/// Pieces of a ListObjectsV2 answer, found by plain search (the bench trusts its endpoint's XML
/// no further than counting keys and following the continuation token).
public enum ListPage {
    public static func keyCount(_ xml: String) -> Int { xml.components(separatedBy: "<Key>").count - 1 }

    public static func continuation(_ xml: String) -> String? {
        guard xml.contains("<IsTruncated>true</IsTruncated>"), let a = xml.range(of: "<NextContinuationToken>"),
            let b = xml.range(of: "</NextContinuationToken>", range: a.upperBound..<xml.endIndex)
        else { return nil }
        return String(xml[a.upperBound..<b.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
    }

    /// The `<Code>` of an S3 error body, if any.
    public static func errorCode(_ xml: String) -> String? {
        guard let a = xml.range(of: "<Code>"), let b = xml.range(of: "</Code>", range: a.upperBound..<xml.endIndex) else { return nil }
        return String(xml[a.upperBound..<b.lowerBound].prefix(64))
    }
}
