import S3Bench
import Testing

@testable import S3

/// `stacks bench s3`: what it signs verifies, what it is told is bounded, and its mixed workload
/// never reads a key it has not written.
@Suite struct BenchTests {
    @Test(arguments: [
        ("/bucket/key", [(String, String)]()),
        ("/b/a key/with+odd~chars%/ü", [("prefix", "a/b c"), ("list-type", "2"), ("continuation-token", "x+y=z")]),
    ])
    func signedRequestsVerify(path: String, query: [(String, String)]) throws {
        let signer = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
        let now: Int64 = 1_369_353_600
        let s = signer.sign(method: "GET", path: path, query: query, host: "127.0.0.1:9000", epochSeconds: now)
        var headers: [String: String] = [:]
        for (n, v) in s.headers { headers[n.lowercased()] = v }
        let target = s.target.split(separator: "?", maxSplits: 1)
        let pairs = target.count == 2 ? target[1].split(separator: "&") : []
        let sent: [(String, String)] = pairs.map { (p: Substring) -> (String, String) in
            let kv = p.split(separator: "=", maxSplits: 1).map { SigV4.percentDecode(String($0)) ?? "" }
            return (kv[0], kv.count == 2 ? kv[1] : "")
        }
        #expect(sent.map(\.0) == query.map(\.0) && sent.map(\.1) == query.map(\.1), "the target carries the query as given")
        let verifier = SigV4(credentials: FixedKeys(), region: "us-east-1", nowMs: now * 1000)
        let request = SignedRequest(method: "GET", rawPath: String(target[0]), query: sent, headers: headers)
        #expect(try verifier.verify(request)?.accessKey == "AKIAIOSFODNN7EXAMPLE")
        var tampered = request
        tampered.method = "DELETE"
        #expect(throws: S3Error.signatureMismatch()) { try verifier.verify(tampered) }
    }

    @Test func sizesAndDurationsParseWithinBounds() throws {
        #expect(try BenchConfig.parseSize("4KiB") == 4096)
        #expect(try BenchConfig.parseSize("1MiB") == 1 << 20)
        #expect(try BenchConfig.parseSize("1.5MB") == 1_500_000)
        #expect(try BenchConfig.parseSize("0") == 0)
        for bad in ["", "-1", "2GiB", "1e300", "nan", "4XB", "KiB"] { #expect(throws: BenchError.self, "\(bad)") { try BenchConfig.parseSize(bad) } }
        #expect(try BenchConfig.parseDuration("10s") == 10)
        #expect(try BenchConfig.parseDuration("500ms") == 0.5)
        #expect(try BenchConfig.parseDuration("2m") == 120)
        for bad in ["", "-3s", "2h", "inf", "99999"] { #expect(throws: BenchError.self, "\(bad)") { try BenchConfig.parseDuration(bad) } }
        for (c, d, o) in [(0, 1.0, 10), (1025, 1.0, 10), (8, 0.0, 10), (8, 1.0, 0), (8, .nan, 10)] {
            #expect(throws: BenchError.self) { try BenchConfig(workload: .put, size: 1, concurrency: c, durationSeconds: d, objects: o) }
        }
    }

    /// Over many seeds: GET, HEAD and DELETE only name keys that exist, the mix is near warp's
    /// weights, and what is left over is exactly what exists.
    @Test func mixedReadsOnlyWhatItWrote() throws {
        let config = try BenchConfig(workload: .mixed, size: 1, concurrency: 4, durationSeconds: 1, objects: 40)
        var tally: [BenchOp: Int] = [:]
        for seed in UInt64(1)...50 {
            var plan = WorkerPlan(config: config, worker: 2, seed: seed)
            var exists = Set(0..<config.objectsPerWorker)
            for _ in 0..<2000 {
                let (op, w, i) = plan.nextOp()
                #expect(w == 2 && (0..<config.objectsPerWorker).contains(i), "seed \(seed)")
                tally[op, default: 0] += 1
                switch op {
                case .put: exists.insert(i)
                case .delete: #expect(exists.remove(i) != nil, "seed \(seed): DELETE of a key that is gone")
                default: #expect(exists.contains(i), "seed \(seed): \(op) of a key that is gone")
                }
            }
            #expect(Set(plan.leftover) == exists, "seed \(seed)")
        }
        let n = Double(tally.values.reduce(0, +))
        for (op, share) in [(BenchOp.get, 0.45), (.head, 0.30), (.put, 0.15), (.delete, 0.10)] {
            #expect(abs(Double(tally[op] ?? 0) / n - share) < 0.05, "\(op): \(tally[op] ?? 0) of \(n)")
        }
    }

    @Test func putCyclesOverItsShareAndCleansWhatItWrote() throws {
        let config = try BenchConfig(workload: .put, size: 1, concurrency: 10, durationSeconds: 1, objects: 30)
        var plan = WorkerPlan(config: config, worker: 0, seed: 7)
        #expect((0..<2).map { _ in plan.nextOp().index } == [0, 1])
        #expect(plan.leftover == [0, 1])
        #expect((0..<5).map { _ in plan.nextOp().index } == [2, 0, 1, 2, 0])
        #expect(plan.leftover == [0, 1, 2])
    }

    @Test func listPagesAreFollowed() {
        let page =
            "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a</Key></Contents><Contents><Key>b</Key></Contents>"
            + "<NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>"
        #expect(ListPage.keyCount(page) == 2)
        #expect(ListPage.continuation(page) == "t&1")
        #expect(ListPage.continuation(page.replacingOccurrences(of: "true", with: "false")) == nil)
        #expect(ListPage.errorCode("<Error><Code>SlowDown</Code></Error>") == "SlowDown")
    }
}
