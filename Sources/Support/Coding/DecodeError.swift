/// What every decoder of bytes from the network or the disk throws when it refuses them: cut
/// short, too long, unknown, out of bounds. The reason names the field or the byte.
public struct DecodeError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "cannot decode: \(reason)" }
}
