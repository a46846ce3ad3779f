/// Failures of the security primitives, each naming what failed.
public enum SecurityError: Error, CustomStringConvertible, Equatable {
    case libraryUnavailable(String)
    case badKeyLength(expected: Int, got: Int)
    case sealFailed
    case authenticationFailed
    case digestFailed(String)

    public var description: String {
        switch self {
        case .libraryUnavailable(let what): "crypto library unavailable: \(what)"
        case .badKeyLength(let expected, let got): "key must be \(expected) bytes, got \(got)"
        case .sealFailed: "AEAD encryption failed"
        case .authenticationFailed: "message failed authentication (wrong key or tampered)"
        case .digestFailed(let what): "digest failed: \(what)"
        }
    }
}
