import CISAL
import Foundation

/// Block and record checksums, on ISA-L's kernels: CRC32C guards shard blocks and WAL records
/// against bit rot; CRC32 is S3's x-amz-checksum-crc32.
public enum Checksum {
    public static func crc32c<C: ContiguousBytes>(_ bytes: C, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { iscsi($0, seed: seed) }
    }

    public static func crc32<C: ContiguousBytes>(_ bytes: C, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { gzip($0, seed: seed) }
    }

    /// CRC32C (Castagnoli, iSCSI), standard init and final xor: "123456789" → 0xE3069283.
    private static func iscsi(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        guard let base = bytes.baseAddress else { return seed }
        return ~crc32_iscsi(UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)), Int32(bytes.count), ~seed)
    }

    /// CRC32 (IEEE, as zlib and S3's x-amz-checksum-crc32): "123456789" → 0xCBF43926.
    private static func gzip(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        guard let base = bytes.baseAddress else { return seed }
        return crc32_gzip_refl(seed, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }
}
