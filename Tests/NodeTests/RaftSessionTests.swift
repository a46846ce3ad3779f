import Cluster
import Node
import Raft
import Security
import Testing

/// A sealed Raft frame is good on one connection, once, in order: a recorded frame replayed
/// on a new connection or again on its own is refused, whatever its request id.
@Suite struct RaftSessionTests {
    let keyring = try! Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))

    func frame(_ id: UInt64) -> [UInt8] {
        RaftWire.encode(AddressedFrame(from: "a", fromAddress: "127.0.0.1:1", cluster: "c", to: "b",
                                       frame: .forward(Request(id: RequestID(hi: 1, lo: id), command: .putAccessKey(id: "AK", secret: "s")).encoded)))
    }

    @Test func framesBindToTheirConnectionAndPosition() throws {
        let first = Sodium.randomBytes(RaftSession.challengeBytes), second = Sodium.randomBytes(RaftSession.challengeBytes)
        let hello = keyring.seal(RaftSession.bind(challenge: first, seq: 0, RaftSession.helloBody))
        #expect(hello.count <= RaftSession.helloMaxBytes)
        #expect(RaftSession.unbind(try #require(keyring.open(hello)), challenge: first, seq: 0) == RaftSession.helloBody)
        #expect(RaftSession.unbind(try #require(keyring.open(hello)), challenge: second, seq: 0) == nil, "a recorded hello proves nothing on another connection")

        let recorded = keyring.seal(RaftSession.bind(challenge: first, seq: 1, frame(9)))
        let plain = try #require(keyring.open(recorded))
        #expect(RaftSession.unbind(plain, challenge: first, seq: 1) == frame(9))
        #expect(RaftSession.unbind(plain, challenge: first, seq: 2) == nil, "replayed later on its own connection")
        #expect(RaftSession.unbind(plain, challenge: second, seq: 1) == nil, "replayed on a new connection")
        #expect(RaftSession.unbind(Array(plain.prefix(20)), challenge: first, seq: 1) == nil)
        #expect(RaftSession.unbind([], challenge: first, seq: 0) == nil)
    }
}
