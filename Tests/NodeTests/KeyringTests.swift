import Foundation
import Gossip
import NIOCore
import Telemetry
import Testing

@testable import Membership

@Suite struct KeyringTests {
    @Test func rotationKeepsEveryStageReadable() throws {
        let old = try Keyring.parse(base64: Keyring.generateKey()), new = try Keyring.parse(base64: Keyring.generateKey())
        var a = try Keyring(primary: old), b = try Keyring(primary: old)
        // Stage 1: install everywhere. Both still seal with the old key; both open both.
        a.install(new); b.install(new)
        #expect(b.open(a.seal([1, 2, 3])) == [1, 2, 3])
        // Stage 2: a uses the new key before b does: b still opens a's packets and vice versa.
        try a.use(new)
        #expect(b.open(a.seal([4])) == [4])
        #expect(a.open(b.seal([5])) == [5])
        // Stage 3: b uses it, both remove the old key.
        try b.use(new)
        try a.remove(old); try b.remove(old)
        #expect(b.open(a.seal([6])) == [6])
        #expect(throws: Keyring.KeyringError.removingPrimary) { try a.remove(new) }
        #expect(throws: Keyring.KeyringError.unknownKey) { try a.use(old) }
    }

    @Test func foreignTamperedAndGarbagePacketsDoNotOpen() throws {
        let ring = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
        let other = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
        #expect(ring.open(other.seal([1, 2, 3])) == nil)
        var sealed = ring.seal([1, 2, 3])
        sealed[sealed.count - 1] ^= 1
        #expect(ring.open(sealed) == nil)
        #expect(ring.open([]) == nil)
        #expect(ring.open([1]) == nil)
        #expect(throws: Keyring.KeyringError.self) { try Keyring.parse(base64: "c2hvcnQ=") }
    }

    /// Gossip datagrams carry an authenticated stamp and a nonce id: two seals of the same
    /// packet differ in id; a changed byte anywhere, or the older unstamped version, does not open.
    @Test func datagramsCarryTheirStampAndIdUnderTheSeal() throws {
        let ring = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
        let a = ring.sealDatagram([1, 2, 3], stamp: -42), b = ring.sealDatagram([1, 2, 3], stamp: -42)
        let opened = try #require(ring.openDatagram(a))
        #expect(opened.stamp == -42 && opened.payload == [1, 2, 3])
        #expect(try #require(ring.openDatagram(b)).id != opened.id)
        for i in 0..<a.count {
            var t = a
            t[i] ^= 0x40
            #expect(ring.openDatagram(t) == nil, "byte \(i) changed")
        }
        let old = ring.seal([1, 2, 3])
        #expect(ring.openDatagram(old) == nil && Keyring.isUnstamped(old) && !Keyring.isUnstamped(a))
        #expect(ring.openDatagram([2]) == nil)
    }
}

@Suite struct KeyringMessageTests {
    @Test func requestsAndRepliesRoundTrip() throws {
        let key = try Keyring.parse(base64: Keyring.generateKey())
        let messages = [
            KeyringMessage(id: 7, sentAt: 1_800_000_000_000_000_000, from: "n1", body: .request(op: .use, key: key)),
            KeyringMessage(id: .max, sentAt: -1, from: "", body: .request(op: .list, key: [])),
            KeyringMessage(id: 9, sentAt: 5, from: "n2", body: .reply(error: nil, keys: [key, key.reversed()])),
            KeyringMessage(id: 9, sentAt: 5, from: "n2", body: .reply(error: "that key is not in the keyring", keys: [])),
        ]
        for m in messages {
            let bytes = m.encode()
            #expect(bytes.first == KeyringMessage.marker)
            #expect(try KeyringMessage.decode(bytes) == m)
        }
    }

    /// Remembered request ids (answering resends) stop at their bound under a key holder's flood;
    /// the rest are dropped and counted.
    @Test func rememberedRequestsAreBounded() async throws {
        let dir = try Fixtures.temporaryDirectory("keyring-bound")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let exporter = MetricsExporter()
        let g = Fixtures.idleGossip(in: dir, keyring: try Keyring(primary: Keyring.parse(base64: Keyring.generateKey())), metrics: exporter.metrics)
        let sender = try SocketAddress(ipAddress: "127.0.0.1", port: 9)
        let remembered = try await g.loop.submit {
            for id in 0..<(KeyringResponder.maxRemembered * 2) as Range<Int> {
                g.receiveKeyring(KeyringMessage(id: UInt64(id), sentAt: GossipService.wallClock(), from: "x", body: .request(op: .list, key: [])), from: sender)
            }
            return g.responder.remembered
        }.get()
        #expect(remembered == KeyringResponder.maxRemembered)
        #expect(scraped(await exporter.exposition(), #"stacks_gossip_dropped_total{reason="keyring_busy"}"#) == Double(KeyringResponder.maxRemembered))
    }

    /// Every truncation, an unknown kind or operation, and trailing bytes are refused, never crash.
    @Test func damagedMessagesAreRefused() throws {
        let bytes = KeyringMessage(id: 1, sentAt: 2, from: "n1", body: .request(op: .install, key: Array(repeating: 7, count: 32))).encode()
        for n in 0..<bytes.count { #expect(throws: (any Error).self) { try KeyringMessage.decode(Array(bytes.prefix(n))) } }
        #expect(throws: (any Error).self) { try KeyringMessage.decode(bytes + [0]) }
        var kind = bytes; kind[1] = 3
        #expect(throws: (any Error).self) { try KeyringMessage.decode(kind) }
        var op = bytes; op[op.count - 37] = 9  // op byte: before the key's u32 length and 32 bytes
        #expect(throws: (any Error).self) { try KeyringMessage.decode(op) }
    }
}

@Suite struct GossipCompressionTests {
    @Test func bigPacketsShrinkAndRoundTripSmallOnesStayPlain() {
        let small: [UInt8] = [1, 2, 3]
        #expect(GossipService.compress(small) == small)
        let big = Array((0..<40).map { i in Array("n\(i) 127.0.0.\(i):7946 raft=127.0.0.\(i):7100 cluster=0123456789abcdef".utf8) }.joined())
        let c = GossipService.compress(big)
        #expect(c.first == GossipService.compressedMarker && c.count < big.count / 2)
        #expect(GossipService.decompress(c) == big)
        #expect(GossipService.decompress(small) == small)
    }

    @Test func damagedCompressedPacketsAreRefused() {
        let big = Array(repeating: Array("member-state ".utf8), count: 60).joined()
        let c = GossipService.compress(Array(big))
        #expect(GossipService.decompress(Array(c.prefix(4))) == nil)
        var wrongSize = c
        wrongSize[1] ^= 0x01
        #expect(GossipService.decompress(wrongSize) == nil)
        var huge = c
        huge[4] = 0xFF  // claims more than 1 MiB
        #expect(GossipService.decompress(huge) == nil)
    }
}
