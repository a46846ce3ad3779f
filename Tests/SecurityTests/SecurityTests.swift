import Testing

@testable import Security

@Suite struct SodiumTests {
    @Test func aeadRoundTripAndTamperDetection() throws {
        let key = Sodium.randomBytes(Sodium.AEAD.keyBytes)
        let message = Array("gossip packet".utf8)
        let sealed = try Sodium.AEAD.seal(message, key: key, associatedData: [1, 2])
        #expect(sealed.count == message.count + Sodium.AEAD.nonceBytes + Sodium.AEAD.tagBytes)
        #expect(try Sodium.AEAD.open(sealed, key: key, associatedData: [1, 2]) == message)

        var tampered = sealed
        tampered[tampered.count - 1] ^= 1
        #expect(throws: SecurityError.authenticationFailed) { try Sodium.AEAD.open(tampered, key: key, associatedData: [1, 2]) }
        #expect(throws: SecurityError.authenticationFailed) { try Sodium.AEAD.open(sealed, key: key, associatedData: [9]) }
        let otherKey = Sodium.randomBytes(Sodium.AEAD.keyBytes)
        #expect(throws: SecurityError.authenticationFailed) { try Sodium.AEAD.open(sealed, key: otherKey, associatedData: [1, 2]) }
        #expect(throws: SecurityError.authenticationFailed) { try Sodium.AEAD.open([1, 2, 3], key: key) }
        #expect(throws: SecurityError.badKeyLength(expected: 32, got: 3)) { try Sodium.AEAD.seal(message, key: [1, 2, 3]) }
    }

    @Test func randomBytesDiffer() {
        #expect(Sodium.randomBytes(32) != Sodium.randomBytes(32))
    }
}

@Suite struct DigestTests {
    @Test func knownVectors() {
        #expect(Digest.md5(Array("".utf8)).hex == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Digest.sha256(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // RFC 4231 test case 2.
        #expect(
            Digest.hmacSHA256(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8)).hex
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func streamingEqualsOneShot() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let d = Digest(.md5)
        d.update(data[0..<33_333]); d.update(data[33_333...])
        #expect(d.finish() == Digest.md5(data))
    }

    @Test(arguments: [[UInt8](), [0], [0, 1], [0, 1, 2], Array("hello world".utf8)])
    func base64RoundTrip(bytes: [UInt8]) {
        #expect(Base64.decode(Base64.encode(bytes)) == bytes)
    }

    @Test func base64RejectsGarbage() {
        #expect(Base64.encode(Array("hello".utf8)) == "aGVsbG8=")
        #expect(Base64.decode("aGVsbG8") == nil)
        #expect(Base64.decode("aGV*bG8=") == nil)
        #expect(Base64.decode("a=Vs") == nil)
    }
}

/// Join attempts per source: a burst, then the refill rate; sources apart; memory bounded.
@Suite struct AttemptLimiterTests {
    @Test func aSourceGetsItsBurstThenItsRate() {
        var l = AttemptLimiter(burst: 3, perMinute: 6, maxSources: 2)
        var got: [Bool] = []
        func attempt(_ s: String, _ ms: Int64) -> Bool { l.allow(s, nowMs: ms) }
        for _ in 0..<4 { got.append(attempt("a", 0)) }
        #expect(got == [true, true, true, false])
        let b = attempt("b", 0)
        #expect(b, "another source has its own")
        let early = attempt("a", 9_999), onTime = attempt("a", 10_000), stepped = attempt("a", 5_000)
        #expect(!early && onTime, "one attempt every 10 s")
        #expect(!stepped, "a clock stepped back refills nothing")
        let c = attempt("c", 20_000)
        #expect(c && l.buckets.count == 2 && l.buckets["b"] == nil, "the source heard from longest ago is forgotten")
        got = []
        for _ in 0..<4 { got.append(attempt("a", 10_000_000)) }
        #expect(got == [true, true, true, false], "refilled to the burst, not past it")
    }
}

/// Accepted connections: strangers are capped per address and in all, members only in all.
@Suite struct InboundBudgetTests {
    @Test func strangersLeaveRoomForMembers() {
        var b = InboundBudget(maxTotal: 6, maxStrangers: 3, maxPerStranger: 2)
        var got: [Bool] = []
        for host in ["x", "x", "x", "y", "y", "z"] { got.append(b.admit(host, member: false)) }
        #expect(got == [true, true, false, true, false, false], "2 from x, then 1 from y fills the strangers' 3")
        got = []
        for _ in 0..<4 { got.append(b.admit("m", member: true)) }
        #expect(got == [true, true, true, false], "members fill the total, not the strangers' share")
        b.release("x", member: false)
        let z = b.admit("z", member: false)
        #expect(z && b.strangers == 3 && b.total == 6)
        b.release("m", member: true)
        let m = b.admit("m", member: true)
        #expect(m)
    }
}
