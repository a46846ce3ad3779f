import Coordinator
import DataRPC
import Determinism
import Erasure
import Support

/// One PUT (or delete marker) in flight: stripes stream to every slot's node as the body
/// arrives; `commit` ends the body, then runs the two phases of `WriteCoordinator`. Used by
/// one task at a time. A stream that is neither committed nor aborted closes its connections
/// when it goes, and the nodes drop what they were writing.
public final class PutStream: @unchecked Sendable {
    let plane: DataPlane
    let bucket: String
    let key: String
    let placed: Placed
    /// The version the shards are written under until the commit.
    let written: ObjectVersion
    /// The write's version: `written` until the commit phase fixes it (newer than every version
    /// the prepared nodes had committed, so the write that completes last is the newest), unless
    /// `restamp` is off (an object dated by `asOfMs` keeps its date).
    public private(set) var version: ObjectVersion
    let restamp: Bool
    var fixed = false
    let deleted: Bool
    var coordinator: WriteCoordinator
    var encoder: StripeEncoder
    /// One connection per slot while its node is in the write; nil once it failed.
    var links: [DataConnection?]
    var finished = false

    init(
        plane: DataPlane, bucket: String, key: String, placed: Placed, version: ObjectVersion, restamp: Bool = true, blockSize: Int, deleted: Bool
    ) throws {
        self.plane = plane; self.bucket = bucket; self.key = key; self.placed = placed; self.deleted = deleted
        self.written = version; self.version = version; self.restamp = restamp
        coordinator = WriteCoordinator(
            nodes: placed.nodes.map(\.name), writeQuorum: placed.writeQuorum, grace: plane.settings.grace, timeout: plane.settings.timeout)
        encoder = StripeEncoder(code: try ReedSolomon(dataShards: placed.k, parityShards: placed.m), blockSize: blockSize, compress: plane.settings.compress)
        links = Array(repeating: nil, count: placed.nodes.count)
    }

    deinit { if !finished { for l in links { l?.close() } } }

    /// Shard `i` as written (before the commit: streams, aborts) and as committed (reverts).
    func ref(_ i: Int) -> ShardRef { ShardRef(bucket: bucket, key: key, version: written, shard: i, k: placed.k, m: placed.m, deleted: deleted) }
    func committedRef(_ i: Int) -> ShardRef { ShardRef(bucket: bucket, key: key, version: version, shard: i, k: placed.k, m: placed.m, deleted: deleted) }

    func open() async throws {
        let client = plane.client
        let refs = placed.nodes.indices.map(ref)
        let opened = await withTaskGroup(of: (Int, DataConnection?).self) { g in
            for (i, n) in placed.nodes.enumerated() {
                g.addTask {
                    guard let address = n.address else { return (i, nil) }
                    do {
                        let c = try await client.connect(to: address, node: n.name)
                        do { try await c.send(.putShard(refs[i])) } catch { c.close(); throw error }
                        return (i, c)
                    } catch { return (i, nil) }
                }
            }
            var out: [(Int, DataConnection?)] = []
            for await r in g { out.append(r) }
            return out
        }
        for (i, c) in opened { links[i] = c }
        for i in links.indices where links[i] == nil { apply(coordinator.failed(placed.nodes[i].name, now: DataPlane.monotonic())) }
        try check()
    }

    /// Streams more of the body.
    public func append(_ bytes: [UInt8]) async throws {
        var stripes: [(header: [UInt8], shards: [[UInt8]])] = []
        encoder.feed(bytes) { stripes.append(Self.copy($0)) }
        for s in stripes { try await send(s) }
    }

    /// Drops the write (the body failed its checks): every node discards its temporary file.
    public func abort() {
        finished = true
        for l in links { l?.close() }
        links = links.map { _ in nil }
    }

    static func copy(_ s: Stripe) -> (header: [UInt8], shards: [[UInt8]]) {
        var w = BinaryWriter()
        s.header.encode(&w)
        return (w.bytes, (0..<s.count).map { Array(s.shard($0)) })
    }

    func send(_ stripe: (header: [UInt8], shards: [[UInt8]])) async throws {
        let failed = await withTaskGroup(of: Int?.self) { g in
            for (i, l) in links.enumerated() {
                guard let c = l else { continue }
                let frame = DataFrame.stripe(header: stripe.header, bytes: stripe.shards[i])
                g.addTask {
                    do { try await c.send(frame) } catch { return i }
                    return nil
                }
            }
            var out: [Int] = []
            for await case let i? in g { out.append(i) }
            return out
        }
        for i in failed { drop(i) }
        try check()
    }

    func drop(_ i: Int) {
        links[i]?.close()
        links[i] = nil
        apply(coordinator.failed(placed.nodes[i].name, now: DataPlane.monotonic()))
    }

    func check() throws {
        if case .failed(let reason) = coordinator.outcome {
            abort()
            throw PlaneError("write of \(bucket)/\(key) failed: \(reason)")
        }
    }

    /// Undoes what the coordinator wants undone; commits are sent by `commit`.
    func apply(_ effects: [WriteCoordinator.Effect]) {
        for e in effects {
            switch e {
            case .abort(let node):
                let i = slot(node)
                links[i]?.close()  // mid-put: the node drops the file when the connection goes
                links[i] = nil
                plane.undo(.abort(ref(i)), at: placed.nodes[i])
            case .revert(let node):
                let i = slot(node)
                plane.undo(.revert(committedRef(i)), at: placed.nodes[i])
            case .open, .commit: break
            }
        }
    }

    func slot(_ node: String) -> Int { placed.nodes.firstIndex { $0.name == node }! }

    enum Event: Sendable { case prepared(Int), committed(Int), failed(Int), tick }

    /// Ends the body and commits: returns once a write quorum committed (the nodes that did not
    /// get their shard, for repair), throws when the write failed and was undone.
    @discardableResult
    public func commit(_ meta: VersionMeta) async throws -> [String] {
        var tail: [(header: [UInt8], shards: [[UInt8]])] = []
        encoder.finish { tail.append(Self.copy($0)) }
        for s in tail { try await send(s) }
        var meta = meta
        meta.k = placed.k; meta.m = placed.m; meta.blockSize = encoder.blockSize; meta.stripes = Int(encoder.blocks); meta.deleted = deleted
        let metaBytes = meta.encoded()
        let timeout = plane.client.requestTimeout, tickEvery = plane.settings.grace
        var busy: Set<Int> = []

        await withTaskGroup(of: Event.self) { g in
            let plane = self.plane
            func ask(_ i: Int, _ frame: DataFrame, _ done: Event, accept: @escaping @Sendable (DataFrame) -> Bool) {
                guard let c = links[i] else { return }
                busy.insert(i)
                g.addTask {
                    do {
                        try await c.send(frame)
                        if accept(try await c.receive(timeout: timeout)) { return done }
                    } catch {}
                    return .failed(i)
                }
            }
            func run(_ effects: [WriteCoordinator.Effect]) {
                let committing = effects.contains { if case .commit = $0 { true } else { false } }
                if committing && !fixed {
                    // The commit phase fixes the version: after every one the prepared nodes had.
                    fixed = true
                    if restamp { version = plane.nextVersion() }
                }
                apply(effects)
                for case .commit(let node) in effects {
                    let i = slot(node)
                    ask(i, version == written ? .commit(ref(i)) : .commitAs(ref(i), version), .committed(i)) { $0 == .ok }
                }
            }
            for i in links.indices {
                ask(i, .finish(meta: metaBytes), .prepared(i)) { answer in
                    switch answer {
                    case .prepared: return true
                    case .preparedAfter(let newest):
                        plane.observe(newest)
                        return true
                    default: return false
                    }
                }
            }
            g.addTask {
                try? await Task.sleep(for: .nanoseconds(tickEvery.nanoseconds)); return .tick
            }
            run(coordinator.bodyEnded(now: DataPlane.monotonic()))
            while coordinator.outcome == nil, let e = await g.next() {
                let now = DataPlane.monotonic()
                switch e {
                case .prepared(let i):
                    busy.remove(i)
                    run(coordinator.prepared(placed.nodes[i].name, now: now))
                case .committed(let i):
                    busy.remove(i)
                    run(coordinator.committed(placed.nodes[i].name, now: now))
                case .failed(let i):
                    busy.remove(i)
                    links[i]?.close()
                    links[i] = nil
                    run(coordinator.failed(placed.nodes[i].name, now: now))
                case .tick:
                    run(coordinator.tick(now: now))
                    g.addTask {
                        try? await Task.sleep(for: .nanoseconds(tickEvery.nanoseconds)); return .tick
                    }
                }
            }
            // Decided: connections still waiting for an answer are closed, so their tasks end now.
            for i in busy {
                links[i]?.close()
                links[i] = nil
            }
            g.cancelAll()
        }
        finished = true
        for (i, l) in links.enumerated() {
            if let l, let address = placed.nodes[i].address { plane.client.release(l, to: address) }
        }
        links = links.map { _ in nil }
        switch coordinator.outcome {
        case .acknowledged(let repair): return repair
        case .failed(let reason): throw PlaneError("write of \(bucket)/\(key) failed: \(reason)")
        case nil: throw PlaneError("write of \(bucket)/\(key) undecided")
        }
    }
}
