import Files
import Security
import Synchronization

/// Access keys kept in the data directory (`credentials`, mode 0600: one `ACCESS_KEY SECRET` per line).
/// The first start generates one key and reports it once.
public final class AccessKeys: CredentialStore {
    private let keys: Mutex<[String: String]>
    public let path: String

    public init(dataDir: String) throws {
        path = "\(dataDir)/credentials"
        var loaded: [String: String] = [:]
        if Files.exists(path) {
            for line in String(decoding: try Files.read(path), as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard parts.count == 2 else { throw FileError.corrupt("\(path): malformed credentials line") }
                loaded[String(parts[0])] = String(parts[1])
            }
        }
        keys = Mutex(loaded)
    }

    public func secret(forAccessKey id: String) -> String? { keys.withLock { $0[id] } }

    public var all: [(id: String, secret: String)] { keys.withLock { $0.map { ($0.key, $0.value) }.sorted { $0.id < $1.id } } }

    /// A new random access key id (20 characters) and secret (40 characters).
    public static func generate() -> (id: String, secret: String) {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        let id = "STK" + String(Sodium.randomBytes(17).map { alphabet[Int($0) % 32] })
        return (id, String(Base64.encode(Sodium.randomBytes(30)).map { $0 == "/" ? "-" : $0 == "+" ? "_" : $0 }))
    }

    /// Creates and persists a new access key (20 characters) and secret (40 characters).
    @discardableResult
    public func create() throws -> (id: String, secret: String) {
        let (id, secret) = Self.generate()
        let text = keys.withLock { k in
            k[id] = secret
            return k.map { "\($0.key) \($0.value)\n" }.sorted().joined()
        }
        try Files.writeAtomically(Array(text.utf8), to: path)
        return (id, secret)
    }
}
