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
