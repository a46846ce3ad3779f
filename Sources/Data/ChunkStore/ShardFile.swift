import Checksum
import Compression
import Files
import Support

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// On-disk shard: a stream of checksummed blocks, then an index of block offsets and a footer.
///
///     header  "STKS" version:u8 0 0 0 blockSize:u32                         (12 bytes)
///     block   rawLength:u32 storedLength:u32 flags:u8 crc32c:u32 stored…    (flags bit 0: LZ4)
///     index   offset:u64 per block
///     footer  indexOffset:u64 blockCount:u32 rawSize:u64 crc32c:u32 "STKE"  (28 bytes)
///
/// The block CRC32C covers the block's first 9 header bytes and its stored bytes; the footer CRC
/// covers the index and the footer's first 20 bytes. Any mismatch is reported, never served.
public enum ShardFormat {
    static let magic: [UInt8] = Array("STKS".utf8)
    static let endMagic: [UInt8] = Array("STKE".utf8)
    static let version: UInt8 = 1
    static let headerBytes = 12
    static let blockHeaderBytes = 13
    static let footerBytes = 28
    public static let defaultBlockSize = 1 << 20
}

/// Streams bytes into a new shard file. Confined to one task at a time; blocking I/O.
public final class ShardWriter: @unchecked Sendable {
    public let path: String
    let blockSize: Int
    let compress: Bool
    private var fd: Int32
    private var pending: [UInt8] = []
    private var offsets: [UInt64] = []
    private var fileOffset = 0
    public private(set) var rawSize = 0

    /// Creates the file exclusively: shard files are named by fresh random ids and never overwritten.
    public init(path: String, blockSize: Int = ShardFormat.defaultBlockSize, compress: Bool = true) throws(FileError) {
        precondition(blockSize > 0 && blockSize <= 64 << 20, "block size out of range")
        self.path = path
        self.blockSize = blockSize
        self.compress = compress
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Files.fail("create", path) }
        var w = BinaryWriter()
        for b in ShardFormat.magic { w.u8(b) }
        w.u8(ShardFormat.version); w.u8(0); w.u8(0); w.u8(0)
        w.u32(UInt32(blockSize))
        try emit(w.bytes)
        pending.reserveCapacity(blockSize)
    }

    deinit { if fd >= 0 { close(fd) } }

    public func append<C: Collection<UInt8>>(_ bytes: C) throws(FileError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let take = min(blockSize - pending.count, rest.count)
            let end = rest.index(rest.startIndex, offsetBy: take)
            pending.append(contentsOf: rest[rest.startIndex..<end])
            rest = rest[end...]
            if pending.count == blockSize { try flushBlock() }
        }
    }

    /// Writes the index and footer and fsyncs. The file is complete and durable when this returns;
    /// the caller makes its directory entry durable (see `Files.syncDirectory`).
    public func finish() throws(FileError) {
        if !pending.isEmpty { try flushBlock() }
        var w = BinaryWriter()
        for o in offsets { w.u64(o) }
        let indexOffset = fileOffset
        w.u64(UInt64(indexOffset)); w.u32(UInt32(offsets.count)); w.u64(UInt64(rawSize))
        let crc = Checksum.crc32c(w.bytes)
        w.u32(crc)
        for b in ShardFormat.endMagic { w.u8(b) }
        try emit(w.bytes)
        guard fsync(fd) == 0 else { throw Files.fail("fsync", path) }
        close(fd); fd = -1
    }

    /// Abandons the shard and removes its file.
    public func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(path)
    }

    private func flushBlock() throws(FileError) {
        let compressed = compress ? LZ4.compressIfSmaller(pending) : nil
        let stored = compressed ?? pending
        var w = BinaryWriter()
        w.u32(UInt32(pending.count)); w.u32(UInt32(stored.count)); w.u8(compressed == nil ? 0 : 1)
        let crc = Checksum.crc32c(stored, seed: Checksum.crc32c(w.bytes))
        w.u32(crc)
        offsets.append(UInt64(fileOffset))
        rawSize += pending.count
        try emit(w.bytes)
        try emit(stored)
        pending.removeAll(keepingCapacity: true)
    }

    private func emit(_ bytes: [UInt8]) throws(FileError) {
        try Files.writeAll(fd: fd, bytes[...], path: path)
        fileOffset += bytes.count
    }
}

/// Reads verified byte ranges of a shard file. Blocking I/O; safe to share between tasks (pread).
public final class ShardReader: Sendable {
    public let path: String
    public let rawSize: Int
    public let blockSize: Int
    let offsets: [UInt64]
    private let fd: Int32

    public init(path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ENOENT ? .notFound(path) : Files.fail("open", path) }
        do throws(FileError) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw Files.fail("fstat", path) }
            let fileSize = Int(st.st_size)
            guard fileSize >= ShardFormat.headerBytes + ShardFormat.footerBytes else { throw FileError.corrupt("\(path): too short") }
            let header = try Files.readExactly(fd: fd, count: ShardFormat.headerBytes, at: 0, path: path)
            guard Array(header[0..<4]) == ShardFormat.magic, header[4] == ShardFormat.version else {
                throw FileError.corrupt("\(path): not a version-\(ShardFormat.version) shard")
            }
            let blockSize = try Files.decoding(path) { () throws(DecodeError) in
                var hr = BinaryReader(Array(header[8...]))
                return Int(try hr.u32())
            }
            let footer = try Files.readExactly(fd: fd, count: ShardFormat.footerBytes, at: fileSize - ShardFormat.footerBytes, path: path)
            guard Array(footer[24...]) == ShardFormat.endMagic else { throw FileError.corrupt("\(path): missing footer (torn write?)") }
            let (indexOffset, count, rawSize, crc) = try Files.decoding(path) { () throws(DecodeError) in
                var fr = BinaryReader(Array(footer[0..<24]))
                return (try fr.int(max: fileSize), Int(try fr.u32()), try fr.int(max: 1 << 50), try fr.u32())
            }
            guard indexOffset + count * 8 + ShardFormat.footerBytes == fileSize, blockSize > 0 else {
                throw FileError.corrupt("\(path): footer does not match file size")
            }
            let index = try Files.readExactly(fd: fd, count: count * 8, at: indexOffset, path: path)
            guard Checksum.crc32c(footer[0..<20], seed: Checksum.crc32c(index)) == crc else {
                throw FileError.corrupt("\(path): index checksum mismatch")
            }
            var ir = BinaryReader(index)
            var offsets: [UInt64] = []
            for _ in 0..<count {
                let o = try Files.decoding(path) { () throws(DecodeError) in try ir.u64() }
                guard o < UInt64(indexOffset), Int(o) + ShardFormat.blockHeaderBytes <= indexOffset else {
                    throw FileError.corrupt("\(path): block offset past the index")
                }
                offsets.append(o)
            }
            guard count == (rawSize + blockSize - 1) / blockSize else { throw FileError.corrupt("\(path): block count mismatch") }
            self.offsets = offsets
            self.rawSize = rawSize
            self.blockSize = blockSize
            self.fd = fd
        } catch {
            close(fd); throw error
        }
    }

    deinit { close(fd) }

    /// Number of blocks; block i holds raw bytes [i·blockSize, min((i+1)·blockSize, rawSize)).
    public var blockCount: Int { offsets.count }

    /// Reads, verifies and decompresses one block.
    public func block(_ i: Int) throws(FileError) -> [UInt8] {
        let at = Int(offsets[i])
        let head = try Files.readExactly(fd: fd, count: ShardFormat.blockHeaderBytes, at: at, path: path)
        let (raw, storedLength, flags, crc) = try Files.decoding(path) { () throws(DecodeError) in
            var r = BinaryReader(head)
            return (Int(try r.u32()), Int(try r.u32()), try r.u8(), try r.u32())
        }
        let expectedRaw = min(blockSize, rawSize - i * blockSize)
        // A raw block is stored as is: its stored length is its raw length.
        guard raw == expectedRaw, storedLength <= blockSize + 64, flags <= 1, flags == 1 || storedLength == raw else {
            throw .corrupt("\(path): block \(i) header damaged")
        }
        let stored = try Files.readExactly(fd: fd, count: storedLength, at: at + ShardFormat.blockHeaderBytes, path: path)
        guard Checksum.crc32c(stored, seed: Checksum.crc32c(head[0..<9])) == crc else {
            throw .corrupt("\(path): block \(i) checksum mismatch")
        }
        return flags == 1 ? try Files.decoding(path) { () throws(DecodeError) in try LZ4.decompress(stored, rawSize: raw) } : stored
    }

    /// Calls `body` with consecutive slices covering raw bytes [range.lowerBound, range.upperBound).
    public func forEachSlice(of range: Range<Int>, _ body: (ArraySlice<UInt8>) throws -> Void) throws {
        precondition(range.lowerBound >= 0 && range.upperBound <= rawSize, "range outside shard")
        guard !range.isEmpty else { return }
        for i in (range.lowerBound / blockSize)...((range.upperBound - 1) / blockSize) {
            let data = try block(i)
            let start = i * blockSize
            try body(data[max(range.lowerBound - start, 0)..<min(range.upperBound - start, data.count)])
        }
    }
}
