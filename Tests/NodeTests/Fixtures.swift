import Foundation
import Logging
import Membership

/// What several suites here need: a scratch directory and a gossip service that is built but not
/// running (its loop runs submitted work; no socket).
enum Fixtures {
    static func temporaryDirectory(_ prefix: String) throws -> String {
        let dir = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func idleGossip(in dir: String, keyring: Keyring) -> GossipService {
        GossipService(name: "a", listen: ListenAddress("127.0.0.1:1")!, tags: [:], seeds: [], keyring: keyring,
                      keyringPath: "\(dir)/keyring", seed: 1, logger: Logger(label: "test"))
    }
}
