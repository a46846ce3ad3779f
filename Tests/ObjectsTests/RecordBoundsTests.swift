import ChunkStore
import Files
import Support
import Testing

@testable import Objects

/// Object records come from disk, where bit rot can turn a size into anything: a record whose
/// numbers no writer produces fails to decode (so recovery skips it) instead of trapping.
@Suite struct RecordBoundsTests {
    static func record(size: UInt64, partSizes: [UInt64]) -> [UInt8] {
        var w = BinaryWriter()
        w.header(.object)
        w.string("b"); w.string("k"); w.string("v1"); w.u64(size); w.string("etag")
        w.string("text/plain"); w.i64(0); w.metadata([])
        w.u32(UInt32(partSizes.count))
        for s in partSizes { w.string("shard"); w.u64(s); w.string("e") }
        w.metadata([])
        return w.bytes
    }

    @Test func aWellFormedRecordDecodes() throws {
        let o = try ObjectInfo(decoding: Self.record(size: 10, partSizes: [4, 6]))
        #expect(o.size == 10 && o.parts.map(\.size) == [4, 6])
    }

    static let absurd: [(size: UInt64, parts: [UInt64])] = [
        (UInt64.max, [UInt64.max]),
        (UInt64(1) << 63, [UInt64(1) << 62, UInt64(1) << 62]),
        (10, [UInt64.max, 11]),
        (UInt64(6) << 40, [UInt64(6) << 40]),
    ]

    @Test(arguments: absurd.indices)
    func sizesNoWriterProducesAreCorrupt(i: Int) {
        let (size, parts) = Self.absurd[i]
        #expect(throws: DecodeError.self) { try ObjectInfo(decoding: Self.record(size: size, partSizes: parts)) }
    }
}
