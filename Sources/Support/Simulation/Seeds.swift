import Determinism
import Foundation

/// Runs a simulation over many seeds and reports every broken invariant with the seed that broke
/// it, so a failure reruns alone: `STACKS_SEED=N swift test --filter NAME` runs seed N only.
public enum Seeds {
    /// Seeds `range`, or only `STACKS_SEED` when it is set.
    public static func each(_ range: Range<UInt64>, _ body: (UInt64) -> [String]) -> [String] {
        let only = ProcessInfo.processInfo.environment["STACKS_SEED"].flatMap(UInt64.init)
        let seeds = only.map { [$0] } ?? Array(range)
        var failures: [String] = []
        for seed in seeds {
            failures += body(seed).map { "seed \(seed): \($0)" }
        }
        return failures
    }

    /// A summary for a failed expectation: how many failed, the first few, and how to rerun one.
    public static func report(_ failures: [String], limit: Int = 8) -> String {
        guard let first = failures.first else { return "all seeds passed" }
        let seed = first.split(separator: ":").first.map { $0.dropFirst(5) } ?? ""
        return "\(failures.count) failures (rerun one with STACKS_SEED=\(seed)): " + failures.prefix(limit).joined(separator: "; ")
    }
}
