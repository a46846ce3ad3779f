import Hummingbird
import Synchronization
import Telemetry

/// The S3 endpoint's series: requests by operation and status, latency by operation, and body
/// bytes in and out (as declared by Content-Length).
final class S3Metrics: Sendable {
    static let requests = Series("stacks_s3_requests_total", "S3 requests by operation and HTTP status.")
    static let duration = Series(
        "stacks_s3_request_duration_seconds", "Time from a request's head to its response head, by operation.",
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
    static let bytesIn = Series("stacks_s3_received_bytes_total", "Bytes of S3 request bodies, by operation.")
    static let bytesOut = Series("stacks_s3_sent_bytes_total", "Bytes of S3 response bodies, by operation.")

    struct PerOperation {
        let duration: CoreMetrics.Timer, bytesIn: CoreMetrics.Counter, bytesOut: CoreMetrics.Counter
        var requests: [Int: CoreMetrics.Counter] = [:]
    }

    let metrics: Metrics
    /// Handles made once per operation and status, not per request (operations are a fixed set
    /// and statuses HTTP's, so this stays small).
    let handles = Mutex<[String: PerOperation]>([:])

    init(metrics: Metrics) { self.metrics = metrics }

    func record(_ op: String, status: Int, nanoseconds: Int64, bytesIn: Int, bytesOut: Int) {
        let (requests, h) = handles.withLock { all in
            var h =
                all[op]
                ?? PerOperation(
                    duration: metrics.timer(Self.duration, [("op", op)]),
                    bytesIn: metrics.counter(Self.bytesIn, [("op", op)]),
                    bytesOut: metrics.counter(Self.bytesOut, [("op", op)]))
            let requests = h.requests[status] ?? metrics.counter(Self.requests, [("op", op), ("status", "\(status)")])
            h.requests[status] = requests
            all[op] = h
            return (requests, h)
        }
        requests.increment()
        h.duration.recordNanoseconds(nanoseconds)
        if bytesIn > 0 { h.bytesIn.increment(by: bytesIn) }
        if bytesOut > 0 { h.bytesOut.increment(by: bytesOut) }
    }
}

extension S3Call {
    /// The S3 operation a request asks for, named as AWS names it; `Unknown` for what is not one.
    static func operation(_ method: HTTPRequest.Method, _ call: S3Call?, copySource: Bool) -> String {
        guard let call else { return "Unknown" }
        guard call.bucket != nil else { return method == .get ? "ListBuckets" : "Unknown" }
        guard call.key != nil else {
            switch method {
            case .put: return "CreateBucket"
            case .head: return "HeadBucket"
            case .delete: return "DeleteBucket"
            case .get:
                if call.has("location") { return "GetBucketLocation" }
                if call.has("uploads") { return "ListMultipartUploads" }
                return call.query("list-type") == "2" ? "ListObjectsV2" : "ListObjects"
            case .post: return call.has("delete") ? "DeleteObjects" : "Unknown"
            default: return "Unknown"
            }
        }
        let upload = call.query("uploadId") != nil
        switch method {
        case .put: return upload ? (copySource ? "UploadPartCopy" : "UploadPart") : (copySource ? "CopyObject" : "PutObject")
        case .get: return upload ? "ListParts" : "GetObject"
        case .head: return "HeadObject"
        case .delete: return upload ? "AbortMultipartUpload" : "DeleteObject"
        case .post: return call.has("uploads") ? "CreateMultipartUpload" : upload ? "CompleteMultipartUpload" : "Unknown"
        default: return "Unknown"
        }
    }
}
