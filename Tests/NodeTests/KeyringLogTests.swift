import Membership
import Security
import Testing

@testable import Node

/// What `stacks keyring` answers on a cluster whose keyring travels in the log: read from each
/// live member's keyring tag (fingerprints, primary first), never from a key on the wire.
@Suite struct KeyringLogTests {
    @Test func membersShowingTheChangeAreOkAndKeysAreNamedOnlyWhereKnown() {
        let (old, new, foreign) = ([UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32), [UInt8](repeating: 3, count: 32))
        let fp = GossipService.fingerprint
        #expect(fp(old).count == 12 && fp(old) != fp(new))
        let view: [String: [String]?] = ["a": [fp(new), fp(old)], "b": [fp(old), fp(new)], "c": [fp(old), fp(foreign)], "d": nil]
        let r = KeyringLog.rollout(.use, view, known: [old, new], done: { $0.first == fp(new) })
        #expect(r.op == "use" && r.nodes == 4 && r.ok == ["a"] && r.noReply == ["b", "c", "d"])
        let counts = Dictionary(uniqueKeysWithValues: r.keys.map { ($0.key, ($0.nodes, $0.primary)) })
        #expect(counts.count == 3)
        #expect(counts[Base64.encode(new)]! == (2, 1) && counts[Base64.encode(old)]! == (3, 2))
        #expect(counts["fingerprint:\(fp(foreign))"]! == (1, 0), "a key this node does not hold is shown by fingerprint only")
    }
}
