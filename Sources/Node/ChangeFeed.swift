import Synchronization

/// A count of changes to what `stacks status` and `stacks members` show, for long polls: a
/// watcher sends the version it last saw (`?since=V&wait=S`) and is answered when the version
/// moves or its wait ends, so `--watch` redraws on membership and Raft events instead of polling.
/// Waiters are bounded: past `maxWaiters` a request is answered at once.
public final class ChangeFeed: Sendable {
    public static let maxWaiters = 256
    private struct State {
        var version: UInt64 = 1
        var waiters: [UInt64: CheckedContinuation<UInt64, Never>] = [:]
        /// Each waiter's deadline, cancelled when a change answers it first.
        var timers: [UInt64: Task<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    public init() {}

    public var version: UInt64 { state.withLock { $0.version } }
    /// Long polls waiting now.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Something shown changed: every waiter is answered with the new version.
    public func bump() {
        let (waiters, timers, v) = state.withLock { s in
            s.version += 1
            defer { s.waiters = [:]; s.timers = [:] }
            return (Array(s.waiters.values), Array(s.timers.values), s.version)
        }
        for t in timers { t.cancel() }
        for w in waiters { w.resume(returning: v) }
    }

    /// The version once it is past `since`, or after `timeout`; at once when it already is, or
    /// when `maxWaiters` already wait.
    public func wait(since: UInt64, timeout: Duration) async -> UInt64 {
        await withCheckedContinuation { (c: CheckedContinuation<UInt64, Never>) in
            let id: UInt64? = state.withLock { s in
                guard s.version <= since, s.waiters.count < Self.maxWaiters else { return nil }
                s.nextID += 1
                s.waiters[s.nextID] = c
                return s.nextID
            }
            guard let id else { return c.resume(returning: version) }
            let timer = Task {
                try? await Task.sleep(for: timeout)
                let w = self.state.withLock { s in
                    s.timers[id] = nil
                    return s.waiters.removeValue(forKey: id)
                }
                w?.resume(returning: self.version)
            }
            // Answered already (a change came in between): the timer has nothing left to do.
            let answered = state.withLock { s in
                guard s.waiters[id] != nil else { return true }
                s.timers[id] = timer
                return false
            }
            if answered { timer.cancel() }
        }
    }
}
