import Cluster
import Membership
import NIOCore
import NIOPosix
import Raft
import Security

/// The Raft shell's TCP transport. Each connection carries frames one way, from the connecting
/// side to the acceptor, bound to the acceptor's challenge (`RaftSession`): the acceptor writes
/// its challenge, the connector answers with a sealed hello, then frames numbered in order. Before
/// the hello nothing larger than `RaftSession.helloMaxBytes` is read, and a connection that does
/// not prove the key within `helloTimeout` is closed; accepted connections are capped per host
/// and in all, and closed when idle.
extension RaftService {
    func addAcceptedHandlers(_ ch: any Channel) throws {
        try ch.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: TimeAmount(settings.idleTimeout)))
        // With credentials the hello and the proof come before anything is authenticated.
        let handshake = authority?.identity != nil ? 2 : 1
        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(handshakeFrames: handshake)))
        try ch.pipeline.syncOperations.addHandler(Accepted(service: self))
    }

    func send(_ f: AddressedFrame) {
        guard let address = address(of: f.to) else { return }  // not known yet: Raft resends
        // A removed node gets nothing more, so no entry carrying the gossip key that replaces the one it knew.
        if read({ $0.nodes[f.to]?.removedMs != nil }) {
            if let link = links.removeValue(forKey: f.to) { link.channel?.close(promise: nil) }
            return
        }
        var link = links[f.to] ?? Link(address: address)
        if link.address != address {
            link.channel?.close(promise: nil)
            link = Link(address: address)
        }
        links[f.to] = link
        let plain = RaftWire.encode(f)
        if let ch = link.channel, link.ready {
            ch.write(sealed(plain, on: link), promise: nil)
            dirty.insert(f.to)
        } else {
            if link.pending.count >= 1024 { link.pending.removeFirst() }
            link.pending.append(plain)
            connect(f.to, link)
        }
    }

    /// `plain` sealed as the link's next frame, length-prefixed.
    func sealed(_ plain: [UInt8], on link: Link) -> ByteBuffer {
        let sealed: [UInt8]
        if link.session != nil {
            sealed = link.session!.seal(plain)
        } else {
            sealed = keyring.seal(RaftSession.bind(challenge: link.challenge!, seq: link.seq, plain))
            link.seq += 1
        }
        var buf = ByteBufferAllocator().buffer(capacity: 4 + sealed.count)
        buf.writeInteger(UInt32(sealed.count), endianness: .little)
        buf.writeBytes(sealed)
        return buf
    }

    func connect(_ peer: String, _ link: Link) {
        let now = NIODeadline.now()
        guard !link.connecting, link.channel == nil, now >= link.retryAt, let a = ListenAddress(link.address) else { return }
        link.connecting = true
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(500))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    if let identity = self.authority?.identity {
                        let initiator = NodeHandshake.Initiator(
                            identity: identity, purpose: .raft, ephemeral: Sodium.KeyExchange.keyPair(), admit: self.admitter)
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(AnswerDecoder()))
                        try ch.pipeline.syncOperations.addHandler(
                            HandshakeInitiator(initiator: initiator) { result in
                                switch result {
                                case .success(let session): self.established(peer, link, ch, session: session)
                                case .failure(let e): self.refusedHandshake(peer, e)
                                }
                            })
                    } else {
                        try ch.pipeline.syncOperations.addHandler(ChallengeReader { challenge in self.established(peer, link, ch, challenge) })
                    }
                }
            }
            .connect(host: a.host, port: a.port)
            .whenComplete { result in
                link.connecting = false
                switch result {
                case .success(let ch):
                    guard self.links[peer] === link else { ch.close(promise: nil); return }
                    link.channel = ch
                    link.challenge = nil
                    link.session = nil
                    // An acceptor that never answers (not a Stacks node) is let go.
                    let timer = ch.eventLoop.scheduleTask(in: TimeAmount(self.settings.helloTimeout)) {
                        if link.channel === ch && !link.ready { ch.close(promise: nil) }
                    }
                    ch.closeFuture.whenComplete { _ in
                        timer.cancel()
                        guard link.channel === ch else { return }
                        link.channel = nil
                        link.challenge = nil
                        link.session = nil
                        link.retryAt = NIODeadline.now() + .milliseconds(100)
                        self.lostConnection(to: peer)
                    }
                case .failure:
                    link.retryAt = NIODeadline.now() + .milliseconds(100)
                    link.pending = []
                    self.lostConnection(to: peer)
                }
            }
    }

    /// The acceptor's challenge arrived: say hello, then send what waited.
    func established(_ peer: String, _ link: Link, _ ch: any Channel, _ challenge: [UInt8]) {
        guard link.channel === ch, !link.ready else { return }
        link.challenge = challenge
        link.seq = 0
        ch.write(sealed(RaftSession.helloBody, on: link), promise: nil)
        sendPending(link, ch)
    }

    /// The node handshake finished (its last message is already written): send what waited.
    func established(_ peer: String, _ link: Link, _ ch: any Channel, session: NodeSession) {
        guard link.channel === ch, !link.ready else { return }
        guard session.peer.node == peer else {
            refusedHandshake(peer, HandshakeError("the node at \(link.address) is \(session.peer.node), not \(peer)"))
            ch.close(promise: nil)
            return
        }
        link.session = session
        sendPending(link, ch)
    }

    func sendPending(_ link: Link, _ ch: any Channel) {
        for p in link.pending { ch.write(sealed(p, on: link), promise: nil) }
        link.pending = []
        ch.flush()
    }

    /// The caller's admission rule, for handshakes (refuses nothing without an authority).
    var admitter: NodeHandshake.Admit {
        let authority = self.authority
        return { authority?.admit($0) }
    }

    func refusedHandshake(_ peer: String, _ e: HandshakeError) {
        handshakesRefused += 1
        if handshakesRefused & (handshakesRefused - 1) == 0 {  // 1st, 2nd, 4th, 8th…
            logger.warning("refused a Raft connection", metadata: ["peer": "\(peer)", "why": "\(e)", "count": "\(handshakesRefused)"])
        }
    }

    /// Whether `host` is where a gossip member lives (its gossip, Raft or data address): its
    /// connections skip the strangers' caps.
    func isMemberHost(_ host: String) -> Bool {
        members.values.contains { m in
            ([m.address] + [RaftService.addressTag, ClusterStatus.dataAddressTag].compactMap { m.tags[$0] }).contains { ListenAddress($0)?.host == host }
        }
    }

    func admitInbound(_ host: String, member: Bool) -> Bool {
        guard inbound.admit(host, member: member) else {
            inboundRefused += 1
            if inboundRefused & (inboundRefused - 1) == 0 {  // 1st, 2nd, 4th, 8th…
                logger.warning("refusing Raft connections over the limit", metadata: ["from": "\(host)", "count": "\(inboundRefused)"])
            }
            return false
        }
        return true
    }

    /// Length-prefixed sealed frames; those before the peer is authenticated (the hello, and with
    /// credentials the proof) must be small, checked on the length prefix before buffering.
    struct FrameDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        struct TooLarge: Error {}
        var handshakeFrames: Int
        var framesRead = 0
        mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let n = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return .needMoreData }
            let limit =
                framesRead >= handshakeFrames
                ? RaftWire.maxFrameBytes + 64 : handshakeFrames == 1 ? RaftSession.helloMaxBytes : NodeHandshake.maxMessageBytes
            guard Int(n) <= limit else { throw TooLarge() }
            guard buffer.readableBytes >= 4 + Int(n) else { return .needMoreData }
            buffer.moveReaderIndex(forwardBy: 4)
            framesRead += 1
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(n))!))
            return .continue
        }
    }

    /// The acceptor's end of one connection.
    final class Accepted: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let service: RaftService
        var challenge: [UInt8] = []
        var seq: UInt64 = 0
        /// Where it came from, and whether that is a member's address (as it was counted).
        var host: (String, Bool)?
        var helloTimer: Scheduled<Void>?
        /// With a credential: the node handshake, then its session.
        var acceptor: NodeHandshake.Acceptor?
        var session: NodeSession?
        init(service: RaftService) { self.service = service }

        func channelActive(context: ChannelHandlerContext) {
            let host = context.remoteAddress?.ipAddress ?? "unknown", member = service.isMemberHost(host)
            guard service.admitInbound(host, member: member) else { context.close(promise: nil); return }
            self.host = (host, member)
            if let identity = service.authority?.identity {
                // The connector speaks first.
                acceptor = NodeHandshake.Acceptor(identity: identity, ephemeral: Sodium.KeyExchange.keyPair(), admit: service.admitter)
                challenge = [0]  // open for reading
            } else {
                challenge = Sodium.randomBytes(RaftSession.challengeBytes)
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: challenge)), promise: nil)
            }
            let ch = context.channel, me = NIOLoopBound(self, eventLoop: context.eventLoop)
            helloTimer = context.eventLoop.scheduleTask(in: TimeAmount(service.settings.helloTimeout)) {
                if me.value.seq == 0 && me.value.session == nil { ch.close(promise: nil) }
            }
            context.fireChannelActive()
        }

        /// The credentialed path: hello, then the connector's proof, then numbered frames.
        func readAuthenticated(context: ChannelHandlerContext, _ frame: [UInt8]) {
            if session != nil {
                guard let plain = session!.open(frame) else { return drop(context) }
                if let why = service.authority?.admit(session!.peer) {  // removed since the handshake
                    service.refusedHandshake(session!.peer.node, HandshakeError(why))
                    return drop(context)
                }
                service.receive(plain, from: session!.peer)
                return
            }
            do throws(HandshakeError) {
                if acceptor!.purpose == nil {
                    let answer = try acceptor!.answer(frame)
                    var buf = context.channel.allocator.buffer(capacity: 4 + answer.count)
                    buf.writeInteger(UInt32(answer.count), endianness: .little)
                    buf.writeBytes(answer)
                    context.writeAndFlush(wrapOutboundOut(buf), promise: nil)
                } else {
                    let s = try acceptor!.finish(frame)
                    guard acceptor!.purpose == .raft else { throw HandshakeError("a data handshake on the Raft port") }
                    session = s
                    helloTimer?.cancel()
                }
            } catch {
                service.refusedHandshake(context.remoteAddress?.description ?? "?", error)
                drop(context)
            }
        }

        func drop(_ context: ChannelHandlerContext) {
            service.framesDropped += 1
            challenge = []
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            helloTimer?.cancel()
            if let (host, member) = host { service.inbound.release(host, member: member); self.host = nil }
            challenge = []
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !challenge.isEmpty else { return }  // refused or closing
            let sealed = Array(unwrapInboundIn(data).readableBytesView)
            if acceptor != nil { return readAuthenticated(context: context, sealed) }
            guard let plain = service.keyring.open(sealed), let body = RaftSession.unbind(plain, challenge: challenge, seq: seq),
                seq > 0 || body == RaftSession.helloBody
            else {
                // Garbage, another key, a replay or a frame out of order: nothing more from here.
                service.framesDropped += 1
                challenge = []
                context.close(promise: nil)
                return
            }
            seq += 1
            if seq == 1 { helloTimer?.cancel(); return }
            service.receive(body)
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            service.framesDropped += 1
            challenge = []
            context.close(promise: nil)
        }
    }

    /// The acceptor's answer to a node hello: one length-prefixed frame.
    struct AnswerDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        struct TooLarge: Error {}
        mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let n = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return .needMoreData }
            guard Int(n) <= NodeHandshake.maxMessageBytes else { throw TooLarge() }
            guard buffer.readableBytes >= 4 + Int(n) else { return .needMoreData }
            buffer.moveReaderIndex(forwardBy: 4)
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(n))!))
            return .continue
        }
    }

    /// The connector's end of the node handshake: sends the hello, checks the answer, sends its
    /// proof, then reports the session (the acceptor sends nothing more).
    final class HandshakeInitiator: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let initiator: NodeHandshake.Initiator
        var done: ((Result<NodeSession, HandshakeError>) -> Void)?
        init(initiator: NodeHandshake.Initiator, done: @escaping (Result<NodeSession, HandshakeError>) -> Void) {
            self.initiator = initiator; self.done = done
        }

        func write(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
            var buf = context.channel.allocator.buffer(capacity: 4 + bytes.count)
            buf.writeInteger(UInt32(bytes.count), endianness: .little)
            buf.writeBytes(bytes)
            context.writeAndFlush(wrapOutboundOut(buf), promise: nil)
        }

        func channelActive(context: ChannelHandlerContext) {
            write(context, initiator.hello)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let finish = done else { return }
            done = nil
            do {
                let (proof, session) = try initiator.finish(answering: Array(unwrapInboundIn(data).readableBytesView))
                write(context, proof)
                finish(.success(session))
            } catch {
                finish(.failure(error))
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// The connector's end: reads the acceptor's challenge, then ignores the (empty) rest.
    final class ChallengeReader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var got: [UInt8] = []
        let done: ([UInt8]) -> Void
        init(done: @escaping ([UInt8]) -> Void) { self.done = done }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard got.count < RaftSession.challengeBytes else { return }
            let bytes = unwrapInboundIn(data).readableBytesView
            got += bytes.prefix(RaftSession.challengeBytes - got.count)
            if got.count == RaftSession.challengeBytes { done(got) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}

extension RaftService {
    // MARK: Transport

    func flushLinks() {
        for n in dirty { links[n]?.channel?.flush() }
        dirty = []
    }

    /// A closed or refused connection to the leader usually means it died: stand soon (see
    /// `RaftNode.peerUnreachable`) rather than after a whole election timeout.
    func lostConnection(to peer: String) {
        guard core.leader == peer, peer != name else { return }
        logger.info("lost connection to the leader", metadata: ["leader": "\(peer)"])
        handle(core.peerUnreachable(peer))
    }

    /// Notes when `peer` was last heard and at which address, within `maxPeersHeard`.
    func remember(_ peer: String, at address: String) {
        if lastHeard[peer] == nil, lastHeard.count >= settings.maxPeersHeard {
            let known = core.voters.union(core.learners).union(members.keys)
            lastHeard = lastHeard.filter { known.contains($0.key) }
            heardAt = heardAt.filter { known.contains($0.key) }
            guard lastHeard.count < settings.maxPeersHeard else { return }
        }
        lastHeard[peer] = .now()
        if heardAt[peer] != address, ListenAddress(address) != nil { heardAt[peer] = address }
    }

    /// Logs a member's refused frame: the 1st, 2nd, 4th, 8th… of them.
    func warnRefused(_ peer: NodeCredential, _ what: String) {
        membersRefused += 1
        guard membersRefused & (membersRefused - 1) == 0 else { return }
        logger.warning("refused a member's Raft frame", metadata: ["peer": "\(peer.node)", "why": "\(what)", "count": "\(membersRefused)"])
    }

    /// One frame's plaintext, from a connection whose hello proved the key (see `RaftSession`),
    /// or whose node handshake proved `peer`: then the frame must be in its name, and a change it
    /// forwards one its role may propose.
    func receive(_ plain: [UInt8], from peer: NodeCredential? = nil) {
        guard let f = try? RaftWire.decode(plain), f.to == name else {
            framesDropped += 1
            return
        }
        if let peer, f.from != peer.node {
            metrics.impersonating.increment()
            return warnRefused(peer, "a frame in the name of \(f.from)")
        }
        if !clusterID.isEmpty && !f.cluster.isEmpty && f.cluster != clusterID {
            foreignFrames += 1
            if foreignFrames & (foreignFrames - 1) == 0 {  // 1st, 2nd, 4th, 8th…
                logger.warning(
                    "dropping Raft frames from another cluster that shares our gossip key",
                    metadata: ["from": "\(f.from)", "their_cluster": "\(f.cluster)", "ours": "\(clusterID)", "count": "\(foreignFrames)"])
            }
            return
        }
        remember(f.from, at: f.fromAddress)
        switch f.frame {
        case .raft(let m):
            handle(core.step(Envelope(from: f.from, to: name, message: m)))
        case .forward(let bytes):
            guard core.isLeader, proposals.count < settings.maxQueued, let req = try? Request(decoding: bytes),
                read({ $0.outcome(of: req.id) }) == nil
            else { return }
            if let peer, !Roles.mayPropose(peer.role.rawValue, req.command) {
                metrics.forbidden.increment()
                return warnRefused(peer, Roles.refusal(peer.role.rawValue, req.command))
            }
            proposals.append(bytes)
            scheduleFlush()
        case .readIndex(let id):
            guard remoteReads.count < settings.maxQueued else { return }  // the follower asks again
            let lid = nextRelayID
            nextRelayID &+= 1
            remoteReads[lid] = (f.from, id)
            if let r = core.readIndex(id: lid) {
                handle(r)
            } else {
                remoteReads[lid] = nil
                send(AddressedFrame(from: name, fromAddress: listen.description, cluster: clusterID, to: f.from, frame: .readIndexReply(id: id, index: nil)))
            }
        case .readIndexReply(let id, let index):
            perform(router.readIndex(id: id, index, applied: core.applied))  // nil: asked again on the next tick
        }
        flushLinks()
    }
}
