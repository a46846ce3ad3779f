import Cluster
import NIOCore
import Raft

/// Changes and linearizable reads: routed to the leader, re-routed on every tick until answered
/// or timed out, bounded by `maxWaiting`.
extension RaftService {
    // MARK: Requests

    /// Applies `command` through the leader; returns once this node has applied it.
    public func submit(_ command: Command, id: RequestID = .random()) async throws -> Outcome {
        let bytes = Request(id: id, command: command).encoded
        return try await loop.flatSubmit { () -> EventLoopFuture<Outcome> in
            if let o = self.read({ $0.outcome(of: id) }) { return self.loop.makeSucceededFuture(o) }
            if let w = self.waiters[id] { return w.promise.futureResult }
            guard self.waiters.count < self.settings.maxWaiting else {
                return self.loop.makeFailedFuture(ClusterError.busy("\(self.settings.maxWaiting) changes are waiting on this node"))
            }
            let now = NIODeadline.now()
            var w = Waiter(promise: self.loop.makePromise(), bytes: bytes, deadline: now + TimeAmount(self.settings.requestTimeout), sentTo: nil, sentAt: now)
            self.route(&w, now: now)
            self.waiters[id] = w
            self.metrics.proposed.increment()
            self.flushLinks()
            return w.promise.futureResult
        }.get()
    }

    /// Waits until this node's replica reflects every change committed before the call
    /// (ReadIndex through the leader); read the local state afterwards.
    public func linearizableBarrier() async throws {
        try await loop.flatSubmit { () -> EventLoopFuture<Void> in
            guard self.reads.count < self.settings.maxWaiting else {
                return self.loop.makeFailedFuture(ClusterError.busy("\(self.settings.maxWaiting) reads are waiting on this node"))
            }
            let id = self.nextReadID
            self.nextReadID += 1
            let now = NIODeadline.now()
            let promise = self.loop.makePromise(of: Void.self)
            self.reads[id] = ReadWaiter(promise: promise, index: nil, deadline: now + TimeAmount(self.settings.requestTimeout), sentTo: nil, sentAt: now)
            self.routeRead(id, now: now)
            self.flushLinks()
            return promise.futureResult
        }.get()
    }

    func route(_ w: inout Waiter, now: NIODeadline) {
        w.sentAt = now
        if core.isLeader {
            proposals.append(w.bytes)
            scheduleFlush()
            w.sentTo = name
        } else if let l = core.leader {
            send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: l, frame: .forward(w.bytes)))
            w.sentTo = l
        } else {
            w.sentTo = nil
        }
    }

    /// Asks for a read index for `reads[id]`: locally when leading, else from the leader.
    func routeRead(_ id: UInt64, now: NIODeadline) {
        reads[id]?.sentAt = now
        if core.isLeader {
            reads[id]?.sentTo = name
            // nil: this term has committed nothing yet; the next tick asks again.
            if let ready = core.readIndex(id: id) { handle(ready) } else { reads[id]?.sentTo = nil }
        } else if let l = core.leader {
            send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: l, frame: .readIndex(id: id)))
            reads[id]?.sentTo = l
        } else {
            reads[id]?.sentTo = nil
        }
    }

    func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute {
            self.flushScheduled = false
            let batch = self.proposals
            self.proposals = []
            if let (_, ready) = self.core.propose(batch: batch) { self.handle(ready) }
            // Not leader any more: the waiters are re-routed on the next tick.
        }
    }
}
