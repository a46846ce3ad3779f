import Cluster
import Gossip
import Membership
import NIOCore
import Raft

/// Changes and linearizable reads: `RequestRouter` (a pure core) decides where each goes, when
/// it is sent again and when it fails; this wires its commands to proposals, frames and promises.
extension RaftService {
    // MARK: Requests

    var routerView: RequestRouter.View { RequestRouter.View(me: name, leader: core.leader) }

    /// Applies `command` through the leader; returns once this node has applied it. Refused
    /// with `forbidden` when this node's role may not propose it (`Roles`).
    public func submit(_ command: Command, id: RequestID = .random()) async throws -> Outcome {
        let role = authority?.identity?.credential.role.rawValue ?? "all"
        guard Roles.mayPropose(role, command) else { throw ClusterError.forbidden(Roles.refusal(role, command)) }
        return try await submitOwn(command, id: id)
    }

    /// `submit` without the role check: the leader's own reconcilers.
    func submitOwn(_ command: Command, id: RequestID = .random()) async throws -> Outcome {
        let bytes = Request(id: id, command: command).encoded
        return try await loop.flatSubmit { () -> EventLoopFuture<Outcome> in
            if let o = self.read({ $0.outcome(of: id) }) { return self.loop.makeSucceededFuture(o) }
            if let p = self.changePromises[id] { return p.futureResult }
            guard let commands = self.router.submit(id, bytes: bytes, now: Instant(NIODeadline.now()), view: self.routerView) else {
                return self.loop.makeFailedFuture(ClusterError.busy("\(self.settings.maxWaiting) changes are waiting on this node"))
            }
            let p = self.loop.makePromise(of: Outcome.self)
            self.changePromises[id] = p
            self.metrics.proposed.increment()
            self.perform(commands)
            self.flushLinks()
            return p.futureResult
        }.get()
    }

    /// Waits until this node's replica reflects every change committed before the call
    /// (ReadIndex through the leader); read the local state afterwards.
    public func linearizableBarrier() async throws {
        try await loop.flatSubmit { () -> EventLoopFuture<Void> in
            guard let (id, commands) = self.router.read(now: Instant(NIODeadline.now()), view: self.routerView) else {
                return self.loop.makeFailedFuture(ClusterError.busy("\(self.settings.maxWaiting) reads are waiting on this node"))
            }
            let p = self.loop.makePromise(of: Void.self)
            self.readPromises[id] = p
            self.perform(commands)
            self.flushLinks()
            return p.futureResult
        }.get()
    }

    /// Carries out the router's commands (on the loop).
    func perform(_ commands: [RequestRouter.Command]) {
        for c in commands {
            switch c {
            case .propose(let bytes):
                proposals.append(bytes)
                scheduleFlush()
            case .forward(let bytes, let leader):
                send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: leader, frame: .forward(bytes)))
            case .readIndexHere(let id):
                // nil: this term has committed nothing yet; the next tick asks again.
                if let ready = core.readIndex(id: id) { handle(ready) } else { perform(router.readIndex(id: id, nil, applied: core.applied)) }
            case .askReadIndex(let id, let leader):
                send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: leader, frame: .readIndex(id: id)))
            case .failed(let id, let reason):
                changePromises.removeValue(forKey: id)?.fail(ClusterError.unavailable(reason))
            case .readFailed(let id, let reason):
                readPromises.removeValue(forKey: id)?.fail(ClusterError.unavailable(reason))
            case .readReady(let id):
                readPromises.removeValue(forKey: id)?.succeed(())
            }
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
            // Not leader any more: the router sends the requests again on the next tick.
        }
    }
}
