import Cluster
import Coordinator
import DataPlane
import Files
import Foundation
import Logging
import NIOPosix
import ShardStore
import Synchronization
import Telemetry

/// The node's scrubber, repairer and mover: walks the keys this node holds, reads every record
/// of their shards (checksums) at a bounded rate, drops a shard that fails, and has each key
/// repaired across its partition (this node repairs the keys where it is the first holder, and
/// any key whose shard it just dropped). A shard the current layout places on another node (the
/// layout changed) is dropped here once that node holds it: repair by the key's first holder
/// writes it there. One pass, then `interval`, then the next.
///
/// What a pass finds goes out as the node's `DataReport` (gossip tag `dstat`): capacity, the
/// health of the keys it counts, and while shards move, how many are left here and the rate.
final class Repairer: Sendable {
    let name: String
    let shards: ShardStore
    let plane: DataPlane
    let interval: Duration
    /// Bytes read per second by the scrub, at most.
    let bytesPerSecond: Int
    let publish: @Sendable (DataReport) -> Void
    let logger: Logger
    /// The last report published (settled version and health carry over between passes).
    let last = Mutex(DataReport())
    /// Bytes the scrub read, and damaged shards it found and had rewritten.
    let scrubbed: CoreMetrics.Counter
    let damageFound: CoreMetrics.Counter
    let damageRepaired: CoreMetrics.Counter

    init(
        name: String, shards: ShardStore, plane: DataPlane, interval: Duration, bytesPerSecond: Int,
        publish: @escaping @Sendable (DataReport) -> Void, metrics: Metrics = .disabled, logger: Logger
    ) {
        self.name = name; self.shards = shards; self.plane = plane; self.interval = interval
        self.bytesPerSecond = bytesPerSecond; self.publish = publish; self.logger = logger
        scrubbed = metrics.counter(Series("stacks_scrub_bytes_total", "Bytes of shards the scrubber read and checked."))
        let damage = Series("stacks_scrub_damaged_shards_total", "Shards the scrubber found failing their checksums, and those rewritten by repair.")
        damageFound = metrics.counter(damage, [("result", "found")])
        damageRepaired = metrics.counter(damage, [("result", "repaired")])
    }

    func run() async {
        while !Task.isCancelled {
            if (try? plane.map.placement(bucket: "", key: "")) != nil { await pass() }
            try? await Task.sleep(for: interval)
        }
    }

    /// Updates the report; gossips it when `now` (each change is a rumor to every member, so
    /// progress goes out every 2 s, not per key).
    func report(now: Bool = true, _ change: (inout DataReport) -> Void) {
        let r = last.withLock { r in
            change(&r)
            r.repairing = UInt64(plane.repairsInFlight)
            return r
        }
        if now { publish(r) }
    }

    /// This node's shards of a key that its layout places on other nodes, with their bytes. A
    /// shard past the layout's slots (written under a wider scheme) has no other place: it stays.
    func misplaced(_ bucket: String, _ key: String) -> (held: [Held], bytes: Int) {
        guard let p = try? plane.map.placement(bucket: bucket, key: key) else { return ([], 0) }
        let away = shards.files(bucket: bucket, key: key).filter { $0.held.shard < p.nodes.count && p.nodes[$0.held.shard].name != name }
        return (away.map(\.held), away.reduce(0) { $0 + $1.bytes })
    }

    /// Every key this node holds, in batches.
    func forEachKey(_ body: (String, String) async -> Bool) async {
        var cursor: (bucket: String, key: String)?
        while !Task.isCancelled {
            let batch = shards.keys(after: cursor, limit: 64)
            guard let tail = batch.last else { return }
            cursor = tail
            for (bucket, key) in batch { guard await body(bucket, key) else { return } }
        }
    }

    func pass() async {
        let version = (try? plane.map.placement(bucket: "", key: ""))?.version ?? 0
        // What is here and what is to move, counted first so progress has a total.
        var used: UInt64 = 0, movingKeys: UInt64 = 0, movingBytes: UInt64 = 0
        await forEachKey { bucket, key in
            used += UInt64(shards.files(bucket: bucket, key: key).reduce(0) { $0 + $1.bytes })
            let away = misplaced(bucket, key)
            if !away.held.isEmpty { movingKeys += 1; movingBytes += UInt64(away.bytes) }
            return true
        }
        let free = Files.freeBytes(shards.root) ?? 0
        report { r in
            r.usedBytes = used; r.freeBytes = free
            r.movingKeys = movingKeys; r.movingBytes = movingBytes; r.movedBytes = 0; r.moveRate = 0
            r.scrubbedBytes = 0; r.scrubTotalBytes = used
        }

        var keys = 0, objects: UInt64 = 0, degraded: UInt64 = 0, atRisk: UInt64 = 0, written = 0, corrupt = 0, failed = 0, stillAway = 0
        var moved: UInt64 = 0
        let started = ContinuousClock.now
        var lastReport = started
        var bytes = 0
        await forEachKey { bucket, key in
            keys += 1
            let shards = self.shards
            guard let (bad, read) = try? await NIOThreadPool.singleton.runIfActive({ shards.verify(bucket: bucket, key: key) }) else { return false }
            for ref in bad {
                logger.warning(
                    "shard failed its checksums; dropped for repair", metadata: ["bucket": "\(bucket)", "key": "\(key)", "version": "\(ref.version)"])
                try? shards.revert(ref)
            }
            corrupt += bad.count
            bytes += read
            scrubbed.increment(by: read)
            damageFound.increment(by: bad.count)
            // Bounded I/O: sleep off what the scrub read ahead of its rate.
            let due = Duration.seconds(Double(bytes) / Double(bytesPerSecond)) - (ContinuousClock.now - started)
            if due > .zero { try? await Task.sleep(for: due) }
            switch await plane.repair(bucket: bucket, key: key, onlyAs: bad.isEmpty ? name : nil) {
            case .checked(let w, let missing, let marker):
                written += w
                damageRepaired.increment(by: min(w, bad.count))
                let m = UInt64((try? plane.map.placement(bucket: bucket, key: key))??.m ?? 0)
                if !marker {
                    objects += 1
                    if missing > 0 { degraded += 1 }
                    if missing > 0 && UInt64(missing) >= m { atRisk += 1 }
                }
            case .failed(let why):
                failed += 1
                atRisk += 1
                logger.info("repair failed; next pass tries again", metadata: ["bucket": "\(bucket)", "key": "\(key)", "why": "\(why)"])
            default: break
            }
            let away = misplaced(bucket, key)
            if !away.held.isEmpty {
                if await plane.movedAway(bucket: bucket, key: key, mine: away.held) {
                    for h in away.held { try? shards.revert(h.ref(bucket, key)) }
                    moved += UInt64(away.bytes)
                    let elapsed = (ContinuousClock.now - started) / .milliseconds(1)
                    report(now: false) { r in
                        r.movingKeys = r.movingKeys > 0 ? r.movingKeys - 1 : 0
                        r.movingBytes = r.movingBytes > UInt64(away.bytes) ? r.movingBytes - UInt64(away.bytes) : 0
                        r.movedBytes = moved
                        r.moveRate = UInt64(Double(moved) / max(elapsed, 1) * 1000)
                    }
                } else {
                    stillAway += 1
                }
            }
            if ContinuousClock.now - lastReport > .seconds(2) {
                lastReport = ContinuousClock.now
                report { $0.scrubbedBytes = UInt64(bytes) }
            }
            return true
        }
        let layoutNow = (try? plane.map.placement(bucket: "", key: ""))?.version ?? 0
        let finished = !Task.isCancelled
        report { r in
            r.objects = objects; r.degraded = degraded; r.atRisk = atRisk
            r.scrubbedBytes = UInt64(bytes)
            if finished { r.lastFullScrubS = UInt64(max(0, Date().timeIntervalSince1970)) }
            if stillAway == 0 && layoutNow == version && !Task.isCancelled { r.settledVersion = max(r.settledVersion, version) }
        }
        if written + corrupt + failed + stillAway > 0 || moved > 0 {
            logger.info(
                "repair pass",
                metadata: [
                    "keys": "\(keys)", "written": "\(written)", "corrupt": "\(corrupt)", "failed": "\(failed)", "moved_bytes": "\(moved)",
                    "left_to_move": "\(stillAway)",
                ])
        }
    }
}
