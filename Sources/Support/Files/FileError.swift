import Support

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Failures of local file I/O and of what a file held, each naming the file or the damage.
public enum FileError: Error, CustomStringConvertible, Equatable {
    case io(operation: String, path: String, errno: Int32)
    case corrupt(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .io(let op, let path, let e): "\(op) \(path): \(String(cString: strerror(e)))"
        case .corrupt(let what): "corrupt data: \(what)"
        case .notFound(let path): "not found: \(path)"
        }
    }
}

extension Files {
    /// Runs a decoder over bytes read from `path`; a refusal is corrupt data in that file.
    public static func decoding<T>(_ path: String, _ body: () throws(DecodeError) -> T) throws(FileError) -> T {
        do { return try body() } catch { throw .corrupt("\(path): \(error.reason)") }
    }
}
