import CLZ4
import Support

/// The one door to liblz4 (block format). The block format does not store the raw size: callers
/// keep it beside each block.
public enum LZ4 {
    /// Compresses `input` if that saves at least 1/16 of it; nil means "store raw".
    /// Capping the output at 15/16 of the input lets LZ4 give up early on incompressible data.
    public static func compressIfSmaller(_ input: [UInt8]) -> [UInt8]? {
        let capacity = input.count - input.count / 16
        var out = [UInt8](repeating: 0, count: max(capacity, 1))
        let written = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { compress(src, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<capacity])) }
        }
        guard let n = written else { return nil }
        out.removeLast(out.count - n)
        return out
    }

    /// Compresses `src` into `dst` if the result fits in `dst` (give it less room than `src` to
    /// keep only what shrinks): the compressed length, or nil for "store raw".
    public static func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int? {
        guard src.count >= 64, !dst.isEmpty, src.count <= Int(Int32.max) else { return nil }
        let n = LZ4_compress_default(
            src.baseAddress!.assumingMemoryBound(to: CChar.self), dst.baseAddress!.assumingMemoryBound(to: CChar.self),
            Int32(src.count), Int32(min(dst.count, Int(Int32.max))))
        return n > 0 ? Int(n) : nil
    }

    /// Decompresses a block whose raw size is known; throws on any mismatch or malformed input.
    public static func decompress(_ input: [UInt8], rawSize: Int) throws(DecodeError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(rawSize, 1))
        let n = input.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                src.withMemoryRebound(to: CChar.self) { s in
                    dst.withMemoryRebound(to: CChar.self) { d in
                        LZ4_decompress_safe(s.baseAddress, d.baseAddress, Int32(src.count), Int32(rawSize))
                    }
                }
            }
        }
        guard n == rawSize else { throw DecodeError("LZ4 block decoded to \(n) bytes, expected \(rawSize)") }
        out.removeLast(out.count - rawSize)
        return out
    }
}
