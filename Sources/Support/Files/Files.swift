import Support

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin, throwing POSIX file operations. Blocking: call them off the event loop.
public enum Files {
    public static func fail(_ op: String, _ path: String) -> FileError { .io(operation: op, path: path, errno: errno) }

    /// Creates a directory and its parents (mode 0700).
    public static func makeDirectory(_ path: String) throws(FileError) {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o700) != 0 && errno != EEXIST { throw fail("mkdir", built) }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// A file's size in bytes; nil when it cannot be stat'ed (gone, say).
    public static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// Bytes free to unprivileged writers on the file system holding `path`.
    public static func freeBytes(_ path: String) -> UInt64? {
        var st = statvfs()
        return statvfs(path, &st) == 0 ? UInt64(st.f_bavail) * UInt64(st.f_frsize) : nil
    }

    /// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
    /// temp file in the same directory, fsync, rename, fsync the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(FileError) {
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw fail("open", temp) }
        do throws(FileError) {
            try writeAll(fd: fd, bytes[...], path: temp)
            guard fsync(fd) == 0 else { throw fail("fsync", temp) }
        } catch {
            close(fd); unlink(temp); throw error
        }
        close(fd)
        guard rename(temp, path) == 0 else { let e = fail("rename", path); unlink(temp); throw e }
        try syncDirectory(of: path)
    }

    public static func read(_ path: String, limit: Int = 64 << 20) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ENOENT ? .notFound(path) : fail("open", path) }
        defer { close(fd) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw fail("read", path) }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            guard out.count <= limit else { throw .corrupt("\(path) is larger than \(limit) bytes") }
        }
    }

    public static func remove(_ path: String) throws(FileError) {
        if unlink(path) != 0 && errno != ENOENT { throw fail("unlink", path) }
    }

    /// Renames `from` to `to` (same file system) and makes both directory entries durable.
    public static func move(_ from: String, to: String) throws(FileError) {
        guard rename(from, to) == 0 else { throw fail("rename", from) }
        try syncDirectory(of: to)
        try syncDirectory(of: from)
    }

    public static func removeDirectory(_ path: String) throws(FileError) {
        if rmdir(path) != 0 && errno != ENOENT { throw fail("rmdir", path) }
    }

    /// Names in a directory, without "." and ".."; empty when it does not exist.
    public static func list(_ path: String) throws(FileError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw fail("opendir", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes a rename or create in the directory holding `path` durable.
    public static func syncDirectory(of path: String) throws(FileError) {
        let dirPath = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let fd = open(dirPath.isEmpty ? "." : dirPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open", dirPath) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw fail("fsync", dirPath) }
    }

    public static func writeAll(fd: Int32, _ bytes: ArraySlice<UInt8>, path: String) throws(FileError) {
        let result: Result<Void, FileError> = bytes.withUnsafeBytes { b in Result { () throws(FileError) in try writeAll(fd: fd, b, path: path) } }
        try result.get()
    }

    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(FileError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 { if errno == EINTR { continue }; throw fail("write", path) }
            done += n
        }
    }

    public static func readExactly(fd: Int32, count: Int, at offset: Int, path: String) throws(FileError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 { if errno == EINTR { continue }; throw fail("pread", path) }
            if n == 0 { throw .corrupt("\(path): unexpected end of file at \(offset + done)") }
            done += n
        }
        return out
    }
}

extension Files {
    /// Reads the file at `path` and decodes it; a refusal is corrupt data in that file.
    public static func read<T>(_ path: String, decoding decode: ([UInt8]) throws(DecodeError) -> T) throws(FileError) -> T {
        let bytes = try read(path)
        return try decoding(path) { () throws(DecodeError) in try decode(bytes) }
    }
}
