import Foundation
import Logging
import Membership
import Telemetry

/// What several suites here need: a scratch directory and a gossip service that is built but not
/// running (its loop runs submitted work; no socket).
enum Fixtures {
    static func temporaryDirectory(_ prefix: String) throws -> String {
        let dir = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func idleGossip(in dir: String, keyring: Keyring, metrics: Metrics = .disabled) -> GossipService {
        GossipService(
            name: "a", listen: ListenAddress("127.0.0.1:1")!, tags: [:], seeds: [], keyring: keyring,
            keyringPath: "\(dir)/keyring", seed: 1, logger: Logger(label: "test"), metrics: metrics)
    }
}

/// The value of one series (name with its labels, as exposed) in Prometheus text; nil if absent.
func scraped(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}
