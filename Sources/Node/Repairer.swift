import DataPlane
import Logging
import NIOPosix
import ShardStore

/// The node's scrubber and repairer: walks the keys this node holds, reads every record of
/// their shards (checksums) at a bounded rate, drops a shard that fails, and has each key
/// repaired across its partition (this node repairs the keys where it is the first holder, and
/// any key whose shard it just dropped). One pass, then `interval`, then the next.
struct Repairer: Sendable {
    let name: String
    let shards: ShardStore
    let plane: DataPlane
    let interval: Duration
    /// Bytes read per second by the scrub, at most.
    let bytesPerSecond: Int
    let logger: Logger

    struct PassReport: Sendable, Equatable {
        var keys = 0
        var repaired = 0
        var corrupt = 0
        var failed = 0
    }

    func run() async {
        while !Task.isCancelled {
            if (try? plane.map.placement(bucket: "", key: "")) != nil { await pass() }
            try? await Task.sleep(for: interval)
        }
    }

    func pass() async {
        var report = PassReport()
        var cursor: (bucket: String, key: String)?
        let started = ContinuousClock.now
        var bytes = 0
        while !Task.isCancelled {
            let batch = shards.keys(after: cursor, limit: 64)
            guard let tail = batch.last else { break }
            cursor = tail
            for (bucket, key) in batch {
                report.keys += 1
                let shards = self.shards
                guard let (bad, read) = try? await NIOThreadPool.singleton.runIfActive({ shards.verify(bucket: bucket, key: key) }) else { return }
                for ref in bad {
                    logger.warning(
                        "shard failed its checksums; dropped for repair", metadata: ["bucket": "\(bucket)", "key": "\(key)", "version": "\(ref.version)"])
                    try? shards.revert(ref)
                }
                report.corrupt += bad.count
                bytes += read
                // Bounded I/O: sleep off what the scrub read ahead of its rate.
                let due = Duration.seconds(Double(bytes) / Double(bytesPerSecond)) - (ContinuousClock.now - started)
                if due > .zero { try? await Task.sleep(for: due) }
                switch await plane.repair(bucket: bucket, key: key, onlyAs: bad.isEmpty ? name : nil) {
                case .repaired(let n): report.repaired += n
                case .failed(let why):
                    report.failed += 1
                    logger.info("repair failed; next pass tries again", metadata: ["bucket": "\(bucket)", "key": "\(key)", "why": "\(why)"])
                default: break
                }
            }
        }
        if report.repaired + report.corrupt + report.failed > 0 {
            logger.info(
                "repair pass",
                metadata: ["keys": "\(report.keys)", "repaired": "\(report.repaired)", "corrupt": "\(report.corrupt)", "failed": "\(report.failed)"])
        }
    }
}
