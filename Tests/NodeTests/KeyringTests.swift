import Testing
@testable import Node

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
