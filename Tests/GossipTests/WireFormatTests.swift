import Testing

@testable import Gossip

@Suite struct WireFormatTests {
    static let samples: [Packet] = [
        Packet(from: "a", fromAddress: "127.0.0.1:7946", message: .ping(seq: 7, target: "b"), rumors: []),
        Packet(
            from: "a", fromAddress: "x:1", message: .pingRequest(seq: 70_000, target: "c", targetAddress: "127.0.0.3:7946"),
            rumors: [
                .alive(name: "d", address: "y:2", incarnation: Incarnation(300), tags: ["zone": "z1", "role": "s"]),
                .suspect(name: "e", incarnation: Incarnation(1), from: "a"),
                .dead(name: "f", incarnation: Incarnation(0), from: "b"), .left(name: "g", incarnation: Incarnation(9)),
            ]),
        Packet(from: "a", fromAddress: "x:1", message: .ack(seq: .max), rumors: []),
        Packet(from: "a", fromAddress: "x:1", message: .nack(seq: 0), rumors: []),
        Packet(
            from: "a", fromAddress: "x:1",
            message: .pushPull(
                states: [
                    MemberState(name: "a", address: "x:1", status: .alive, incarnation: Incarnation(2), tags: [:]),
                    MemberState(name: "q", address: "x:9", status: .left, incarnation: Incarnation(5), tags: ["k": "v"]),
                ], isReply: true, isJoin: false), rumors: []),
        Packet(
            from: "a", fromAddress: "",
            message: .pushPull(
                states: [
                    MemberState(name: "r", address: "x:3", status: .suspect, incarnation: Incarnation(1), tags: ["raft": "x:4"])
                ], isReply: true, isJoin: false, isPart: true), rumors: []),
        Packet(from: "a", fromAddress: "x:1", message: .gossip, rumors: [.left(name: "g", incarnation: Incarnation(1))]),
    ]

    @Test(arguments: samples)
    func roundTrip(p: Packet) throws {
        #expect(try WireFormat.decode(WireFormat.encode(p)) == p)
    }

    @Test func everyTruncationAndAnyTrailingByteIsRejected() {
        for p in Self.samples {
            let bytes = WireFormat.encode(p)
            for cut in 0..<bytes.count {
                #expect(throws: WireFormat.DecodeError.self) { try WireFormat.decode(Array(bytes.prefix(cut))) }
            }
            #expect(throws: WireFormat.DecodeError.self) { try WireFormat.decode(bytes + [0]) }
        }
    }

    @Test func randomGarbageNeverCrashes() {
        var rng = SeededRandom(seed: 42)
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 64)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if !bytes.isEmpty && rng.next() % 2 == 0 { bytes[0] = WireFormat.version }
            _ = try? WireFormat.decode(bytes)
        }
    }

    @Test func pingIsSmall() {
        let p = Packet(from: "node-12", fromAddress: "127.0.0.1:7946", message: .ping(seq: 1234, target: "node-7"), rumors: [])
        #expect(WireFormat.encode(p).count <= 40)
    }
}
