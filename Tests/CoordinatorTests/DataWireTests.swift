import Coordinator
import Determinism
import Support
import Testing

@Suite struct DataWireTests {
    static let ref = ShardRef(
        bucket: "photos", key: "2026/12/a b.jpg", version: ObjectVersion(time: .init(ms: 77, logical: 3), writer: 0xABCD), shard: 5, k: 4, m: 2)
    static let frames: [DataFrame] = [
        .putShard(ref), .stripe(header: Array(repeating: 9, count: 13), bytes: Array(0..<200)), .finish(meta: [1, 2, 3]), .end,
        .commit(ref), .abort(ref), .revert(ShardRef(bucket: "b", key: "", version: ref.version, shard: 0, k: 4, m: 2, deleted: true)),
        .held(bucket: "photos", key: "k"), .heldHead(bucket: "photos", key: "k", maxBytes: 1 << 20), .getShard(ref, first: 2, count: 8), .prepared, .ok,
        .preparedAfter(ObjectVersion(time: .init(ms: 99, logical: 1), writer: 7)),
        .commitAs(ref, ObjectVersion(time: .init(ms: 100, logical: 0), writer: 0xABCD)),
        .versions([Held(ref.version, shard: 1, k: 4, m: 2), Held(ref.version, shard: 2, k: 4, m: 2, deleted: true)]), .versions([]), .meta([]),
        .error(DataError(.notFound, "no such shard")), .list(bucket: "b", prefix: "p/", after: "p/a", limit: 1000),
        .listing(
            [ListEntry(key: "p/b", version: ref.version, deleted: false, meta: [1, 2]), ListEntry(key: "p/c", version: ref.version, deleted: true, meta: [])],
            truncated: true),
    ]

    @Test func everyFrameRoundTrips() throws {
        for f in Self.frames { #expect(try DataWire.decode(DataWire.encode(f)) == f) }
    }

    /// Cut, flipped or random input is refused or decodes to some frame; never a crash, and a
    /// cut frame never decodes. Bounds hold before anything is allocated.
    @Test(arguments: 0..<20) func hostileInputIsRefused(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        for f in Self.frames {
            let good = DataWire.encode(f)
            for _ in 0..<50 {
                var b = good
                switch rng.next() % 3 {
                case 0:
                    b = Array(b.prefix(Int(rng.next() % UInt64(b.count))))
                    #expect(throws: DecodeError.self, "seed \(seed): \(f) cut to \(b.count)") { try DataWire.decode(b) }
                case 1: b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 + rng.next() % 255)
                default: b = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                }
                _ = try? DataWire.decode(b)
            }
        }
        // A huge declared length is refused without allocating it.
        var w = BinaryWriter()
        w.u8(DataWire.version); w.u8(12); w.u32(.max)
        #expect(throws: DecodeError.self) { try DataWire.decode(w.bytes) }
        var v = BinaryWriter()
        v.u8(DataWire.version); v.u8(11); v.u32(.max)
        #expect(throws: DecodeError.self) { try DataWire.decode(v.bytes) }
    }
}
