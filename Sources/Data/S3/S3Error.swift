import Objects

/// An S3 error response: HTTP status, S3 error code and message, rendered as S3's XML.
public struct S3Error: Error, CustomStringConvertible, Equatable {
    public var status: Int
    public var code: String
    public var message: String
    public var resource: String = ""

    public init(_ status: Int, _ code: String, _ message: String) {
        self.status = status; self.code = code; self.message = message
    }

    public var description: String { "\(status) \(code): \(message)" }

    var xml: String {
        XML.document("Error", namespaced: false) { x in
            x.element("Code", code); x.element("Message", message)
            if !resource.isEmpty { x.element("Resource", resource) }
        }
    }

    static func accessDenied(_ m: String = "Access Denied") -> S3Error { S3Error(403, "AccessDenied", m) }
    static func signatureMismatch() -> S3Error {
        S3Error(
            403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
    }
    public static func invalidArgument(_ m: String) -> S3Error { S3Error(400, "InvalidArgument", m) }
    static func invalidRequest(_ m: String) -> S3Error { S3Error(400, "InvalidRequest", m) }
    static let malformedXML = S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
    static func badDigest(_ m: String) -> S3Error { S3Error(400, "BadDigest", m) }
    static let incompleteBody = S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
    static let notImplemented = S3Error(501, "NotImplemented", "A header or query you provided implies functionality that is not implemented.")
    static let methodNotAllowed = S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    /// The S3 answer for an object-layer failure.
    init(_ e: ObjectError) {
        switch e {
        case .noSuchBucket: self.init(404, "NoSuchBucket", "The specified bucket does not exist")
        case .bucketAlreadyOwnedByYou:
            self.init(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.")
        case .bucketNotEmpty: self.init(409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
        case .invalidBucketName: self.init(400, "InvalidBucketName", e.description)
        case .noSuchKey: self.init(404, "NoSuchKey", "The specified key does not exist.")
        case .keyTooLong: self.init(400, "KeyTooLongError", "Your key is too long")
        case .invalidKey: self.init(400, "InvalidArgument", e.description)
        case .noSuchUpload:
            self.init(
                404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
        case .invalidPart: self.init(400, "InvalidPart", e.description)
        case .invalidPartOrder: self.init(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.")
        case .entityTooSmall: self.init(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
        case .tooManyUploads: self.init(503, "SlowDown", e.description)
        case .storage(let s): self.init(500, "InternalError", "We encountered an internal error. Please try again. (\(s))")
        }
    }
}

/// A tiny XML writer for S3 responses, and a parser for the few request bodies S3 takes.
enum XML {
    struct Writer {
        var out = ""
        mutating func element(_ name: String, _ value: String) { out += "<\(name)>\(escape(value))</\(name)>" }
        mutating func element(_ name: String, _ body: (inout Writer) -> Void) {
            out += "<\(name)>"; body(&self); out += "</\(name)>"
        }
    }

    /// S3 puts its namespace on result documents but not on `<Error>`; botocore relies on that.
    static func document(_ root: String, namespaced: Bool = true, _ body: (inout Writer) -> Void) -> String {
        var w = Writer()
        let ns = namespaced ? " xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"" : ""
        w.out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<\(root)\(ns)>"
        body(&w)
        w.out += "</\(root)>"
        return w.out
    }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Control characters cannot appear in XML 1.0 text; S3 escapes them as character references.
                if c.value < 0x20 && c != "\n" && c != "\t" { out += "&#\(c.value);" } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}
