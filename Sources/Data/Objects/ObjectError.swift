import ChunkStore
import Files

/// Failures of the object layer; the S3 layer maps each to its S3 error code.
public enum ObjectError: Error, CustomStringConvertible, Equatable {
    case noSuchBucket(String)
    case bucketAlreadyOwnedByYou(String)
    case bucketNotEmpty(String)
    case invalidBucketName(String)
    case noSuchKey(String)
    case keyTooLong(Int)
    case invalidKey(String)
    case noSuchUpload(String)
    case invalidPart(Int)
    case invalidPartOrder
    case entityTooSmall(part: Int, size: Int)
    case storage(FileError)
    /// `ObjectStore.maxUploadsPerBucket` uploads are in progress in the bucket.
    case tooManyUploads(bucket: String, limit: Int)

    public var description: String {
        switch self {
        case .noSuchBucket(let b): "bucket \(b) does not exist"
        case .bucketAlreadyOwnedByYou(let b): "bucket \(b) already exists"
        case .bucketNotEmpty(let b): "bucket \(b) is not empty"
        case .invalidBucketName(let b):
            "invalid bucket name \(b.debugDescription): 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
        case .noSuchKey(let k): "key \(k.debugDescription) does not exist"
        case .keyTooLong(let n): "key is \(n) bytes; the limit is 1024"
        case .invalidKey(let why): "invalid key: \(why)"
        case .noSuchUpload(let u): "upload \(u) does not exist (aborted or completed?)"
        case .invalidPart(let n): "part \(n) was not uploaded or its ETag does not match"
        case .invalidPartOrder: "parts must be listed in ascending order"
        case .entityTooSmall(let n, let size): "part \(n) is \(size) bytes; every part but the last must be at least 5 MiB"
        case .storage(let e): "storage: \(e)"
        case .tooManyUploads(let b, let n): "bucket \(b) has \(n) multipart uploads in progress, the most it holds; complete or abort some"
        }
    }
}

enum Names {
    static let maxKeyBytes = 1024
    static let minPartSize = 5 << 20

    static func checkBucket(_ name: String) throws(ObjectError) {
        let u = Array(name.utf8)
        let allowed = u.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 45 || $0 == 46 }
        let edge: (UInt8) -> Bool = { (97...122).contains($0) || (48...57).contains($0) }
        guard (3...63).contains(u.count), allowed, edge(u.first!), edge(u.last!), !name.contains("..") else {
            throw .invalidBucketName(name)
        }
    }

    static func checkKey(_ key: String) throws(ObjectError) {
        let n = key.utf8.count
        guard n > 0 else { throw .invalidKey("empty key") }
        guard n <= maxKeyBytes else { throw .keyTooLong(n) }
    }
}
