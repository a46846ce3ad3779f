import Checksum
import Files
import Support

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One node's shard of one object version: one record per stripe (the shard block the codec
/// made for that node), then its metadata (known only once the body ended: size, ETag), then an
/// index; written once, read at any stripe.
///
///     header  "STKO" version:u8 0 0 0
///     record  header:13 (StripeHeader) length:u32 crc32c:u32 bytes…          (CRC over header, length, bytes)
///     meta    length:u32 meta… crc32c:u32                                    (CRC over meta)
///     index   offset:u64 per record
///     footer  metaOffset:u64 indexOffset:u64 records:u32 crc32c:u32 "STKF"   (CRC over index and footer)
///
/// Stripe headers are the codec's (`Erasure.StripeHeader`), kept opaque here: 13 bytes.
public enum StripeFileFormat {
    static let magic: [UInt8] = Array("STKO".utf8)
    static let endMagic: [UInt8] = Array("STKF".utf8)
    static let version: UInt8 = 2
    static let headBytes = 8
    public static let stripeHeaderBytes = 13
    static let footerBytes = 28
    public static let maxMeta = 1 << 20
    public static let maxRecord = 64 << 20
}

/// Streams records into a new file (exclusive create); `finish` writes the metadata and makes
/// it durable.
public final class StripeFileWriter: @unchecked Sendable {
    public let path: String
    private var fd: Int32
    private var offsets: [UInt64] = []
    private var offset = 0

    public init(path: String) throws(FileError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Files.fail("create", path) }
        var w = BinaryWriter()
        for b in StripeFileFormat.magic { w.u8(b) }
        w.u8(StripeFileFormat.version); w.u8(0); w.u8(0); w.u8(0)
        try emit(w.bytes[...])
    }

    deinit { if fd >= 0 { close(fd) } }

    /// One stripe's shard block: its 13-byte stripe header and bytes.
    public func append(header: [UInt8], _ bytes: UnsafeRawBufferPointer) throws(FileError) {
        precondition(header.count == StripeFileFormat.stripeHeaderBytes && bytes.count <= StripeFileFormat.maxRecord)
        var w = BinaryWriter()
        for b in header { w.u8(b) }
        w.u32(UInt32(bytes.count))
        let crc = Checksum.crc32c(bytes, seed: Checksum.crc32c(w.bytes))
        w.u32(crc)
        offsets.append(UInt64(offset))
        try emit(w.bytes[...])
        try Files.writeAll(fd: fd, bytes, path: path)
        offset += bytes.count
    }

    public func append(header: [UInt8], _ bytes: [UInt8]) throws(FileError) {
        let result: Result<Void, FileError> = bytes.withUnsafeBytes { b in Result { () throws(FileError) in try append(header: header, b) } }
        try result.get()
    }

    /// Metadata, index and footer, then fsync: complete and durable when this returns (the caller
    /// makes the directory entry durable when it renames the file into place).
    public func finish(meta: [UInt8]) throws(FileError) {
        precondition(meta.count <= StripeFileFormat.maxMeta, "metadata too large")
        let metaOffset = offset
        var m = BinaryWriter()
        m.blob(meta)
        m.u32(Checksum.crc32c(meta))
        try emit(m.bytes[...])
        var w = BinaryWriter()
        for o in offsets { w.u64(o) }
        w.u64(UInt64(metaOffset)); w.u64(UInt64(offset)); w.u32(UInt32(offsets.count))
        w.u32(Checksum.crc32c(w.bytes))
        for b in StripeFileFormat.endMagic { w.u8(b) }
        try emit(w.bytes[...])
        guard fsync(fd) == 0 else { throw Files.fail("fsync", path) }
        close(fd)
        fd = -1
    }

    /// Abandons the file and removes it.
    public func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(path)
    }

    private func emit(_ bytes: ArraySlice<UInt8>) throws(FileError) {
        try Files.writeAll(fd: fd, bytes, path: path)
        offset += bytes.count
    }
}

/// Reads a finished stripe file; every length from the file is bounded before it is used, and
/// every checksum is checked before bytes are returned.
public final class StripeFileReader: Sendable {
    public let path: String
    public let meta: [UInt8]
    private let fd: Int32
    private let offsets: [UInt64]
    private let recordsEnd: Int

    public init(path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Files.fail("open", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { close(fd); throw Files.fail("fstat", path) }
        let size = Int(st.st_size)
        do throws(FileError) {
            let headBytes = StripeFileFormat.headBytes, footerBytes = StripeFileFormat.footerBytes
            guard size >= headBytes + 8 + footerBytes else { throw FileError.corrupt("\(path): too short for a stripe file") }
            let head = try Files.readExactly(fd: fd, count: headBytes, at: 0, path: path)
            guard Array(head[0..<4]) == StripeFileFormat.magic, head[4] == StripeFileFormat.version else {
                throw FileError.corrupt("\(path): not a stripe file")
            }
            let foot = try Files.readExactly(fd: fd, count: footerBytes, at: size - footerBytes, path: path)
            guard Array(foot[(footerBytes - 4)...]) == StripeFileFormat.endMagic else { throw FileError.corrupt("\(path): no footer (torn write?)") }
            let (metaOffset, indexOffset, count, footCRC) = try Files.decoding(path) { () throws(DecodeError) in
                var r = BinaryReader(Array(foot[0..<(footerBytes - 4)]))
                return (try r.u64(), try r.u64(), Int(try r.u32()), try r.u32())
            }
            // Bounded before any arithmetic: every offset lies inside the file, in order.
            guard metaOffset >= UInt64(headBytes), metaOffset <= indexOffset, indexOffset - metaOffset <= UInt64(StripeFileFormat.maxMeta + 8),
                indexOffset <= UInt64(size), count <= size / 8,
                Int(indexOffset) + count * 8 + footerBytes == size
            else { throw FileError.corrupt("\(path): index out of range") }
            let index = try Files.readExactly(fd: fd, count: count * 8, at: Int(indexOffset), path: path)
            guard Checksum.crc32c(foot[0..<(footerBytes - 8)], seed: Checksum.crc32c(index)) == footCRC else {
                throw FileError.corrupt("\(path): index checksum mismatch")
            }
            let metaArea = try Files.readExactly(fd: fd, count: Int(indexOffset - metaOffset), at: Int(metaOffset), path: path)
            let meta = try Files.decoding(path) { () throws(DecodeError) in
                var r = BinaryReader(metaArea)
                let m = try r.blob(max: StripeFileFormat.maxMeta), crc = try r.u32()
                try r.expectEnd()
                guard Checksum.crc32c(m) == crc else { throw DecodeError("metadata checksum mismatch") }
                return m
            }
            let offsets = try Files.decoding(path) { () throws(DecodeError) in
                var r = BinaryReader(index)
                return try (0..<count).map { _ throws(DecodeError) in try r.u64() }
            }
            // Records are in order and inside the record area (offsets are relative to the file start).
            var last = UInt64(headBytes)
            for o in offsets {
                guard o >= last, o < metaOffset else { throw FileError.corrupt("\(path): record offsets out of order") }
                last = o + 1
            }
            self.meta = meta
            self.offsets = offsets
            self.recordsEnd = Int(metaOffset)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    public var count: Int { offsets.count }

    /// Record i: its stripe header and bytes, checksum verified.
    public func record(_ i: Int) throws(FileError) -> (header: [UInt8], bytes: [UInt8]) {
        precondition(i >= 0 && i < offsets.count, "record out of range")
        let at = Int(offsets[i])
        let end = i + 1 < offsets.count ? Int(offsets[i + 1]) : recordsEnd
        let fixed = StripeFileFormat.stripeHeaderBytes + 8
        guard end - at >= fixed else { throw .corrupt("\(path): record \(i) too short") }
        let head = try Files.readExactly(fd: fd, count: fixed, at: at, path: path)
        let (length, crc) = try Files.decoding(path) { () throws(DecodeError) in
            var r = BinaryReader(Array(head[StripeFileFormat.stripeHeaderBytes...]))
            return (Int(try r.u32()), try r.u32())
        }
        guard length == end - at - fixed else { throw .corrupt("\(path): record \(i) length damaged") }
        let bytes = try Files.readExactly(fd: fd, count: length, at: at + fixed, path: path)
        guard Checksum.crc32c(bytes, seed: Checksum.crc32c(head[0..<(fixed - 4)])) == crc else { throw .corrupt("\(path): record \(i) checksum mismatch") }
        return (Array(head[0..<StripeFileFormat.stripeHeaderBytes]), bytes)
    }
}
