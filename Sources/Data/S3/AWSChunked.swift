import Security

/// Decodes an `aws-chunked` request body (SigV4 streaming upload), verifying each chunk's signature
/// when the payload is signed, and collecting trailing headers (e.g. `x-amz-checksum-crc32`).
///
///     <hex-size>[;chunk-signature=<sig>]\r\n <data> \r\n  … 0[;chunk-signature=<sig>]\r\n [<trailer>:<value>\r\n]* \r\n
///
/// Sans-IO: bytes in, payload bytes out; throws an S3 error on any deviation.
struct AWSChunkedDecoder {
    enum State { case header, data(remaining: Int), dataEnd, trailers, done }

    /// nil for unsigned payloads (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
    let signer: Principal?
    /// Whether the variant carries trailers (`-TRAILER`); a signed one must then sign them.
    let withTrailers: Bool
    private(set) var state: State = .header
    private(set) var trailers: [String: String] = [:]
    private var line: [UInt8] = []
    private var chunkSignature = ""
    private var previousSignature: String
    private var chunkDigest = Digest(.sha256)
    private var trailerText = ""
    static let maxLine = 4096
    /// Bounds on the trailer section: total bytes and header lines.
    static let maxTrailerBytes = 16 << 10, maxTrailers = 16
    private var trailerBytes = 0
    static let emptyHash = Digest.sha256([UInt8]()).hex

    init(signer: Principal?, withTrailers: Bool) {
        self.signer = signer
        self.withTrailers = withTrailers
        previousSignature = signer?.seedSignature ?? ""
    }

    var isDone: Bool { if case .done = state { true } else { false } }

    mutating func feed(_ input: ArraySlice<UInt8>) throws(S3Error) -> [UInt8] {
        var out: [UInt8] = []
        var i = input.startIndex
        while i < input.endIndex {
            switch state {
            case .data(let remaining):
                let n = min(remaining, input.endIndex - i)
                let piece = input[i..<(i + n)]
                out.append(contentsOf: piece)
                if signer != nil { chunkDigest.update(piece) }
                i += n
                state = remaining == n ? .dataEnd : .data(remaining: remaining - n)
            case .header, .dataEnd, .trailers:
                let b = input[i]; i += 1
                line.append(b)
                guard line.count <= Self.maxLine else { throw malformed("line too long") }
                if line.count >= 2 && line[line.count - 2] == 13 && b == 10 {
                    let text = String(decoding: line.dropLast(2), as: UTF8.self)
                    line.removeAll(keepingCapacity: true)
                    try endOfLine(text)
                }
            case .done:
                throw malformed("bytes after the final chunk")
            }
        }
        return out
    }

    private mutating func endOfLine(_ text: String) throws(S3Error) {
        switch state {
        case .header:
            let parts = text.split(separator: ";", maxSplits: 1)
            guard let first = parts.first, let size = Int(first, radix: 16), size >= 0, size <= 1 << 30 else { throw malformed("bad chunk size") }
            if signer != nil {
                guard parts.count == 2, parts[1].hasPrefix("chunk-signature=") else { throw malformed("chunk signature missing") }
                chunkSignature = String(parts[1].dropFirst("chunk-signature=".count))
            }
            if size == 0 {
                try verifyChunk()
                state = .trailers
            } else {
                state = .data(remaining: size)
            }
        case .dataEnd:
            guard text.isEmpty else { throw malformed("chunk data longer than its declared size") }
            try verifyChunk()
            state = .header
        case .trailers:
            if text.isEmpty {
                try verifyTrailer()
                state = .done
                return
            }
            guard withTrailers else { throw malformed("trailers in a variant without them (use a -TRAILER x-amz-content-sha256)") }
            trailerBytes += text.utf8.count + 2
            guard trailerBytes <= Self.maxTrailerBytes, trailers.count < Self.maxTrailers else {
                throw malformed("trailer section over \(Self.maxTrailers) lines or \(Self.maxTrailerBytes) bytes")
            }
            let kv = text.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { throw malformed("bad trailer line") }
            let name = kv[0].lowercased().trimmingSpaces, value = kv[1].trimmingSpaces
            trailers[name] = value
            if name != "x-amz-trailer-signature" { trailerText += "\(name):\(value)\n" }
        case .data, .done:
            preconditionFailure("no lines in this state")
        }
    }

    private mutating func verifyChunk() throws(S3Error) {
        guard let signer else { return }
        let hash = chunkDigest.finish().hex
        chunkDigest = Digest(.sha256)
        let toSign = "AWS4-HMAC-SHA256-PAYLOAD\n\(signer.amzDate)\n\(signer.scope)\n\(previousSignature)\n\(Self.emptyHash)\n\(hash)"
        let expected = Digest.hmacSHA256(key: signer.signingKey, Array(toSign.utf8)).hex
        guard Sodium.constantTimeEqual(Array(expected.utf8), Array(chunkSignature.utf8)) else { throw S3Error.signatureMismatch() }
        previousSignature = chunkSignature
    }

    private func verifyTrailer() throws(S3Error) {
        guard let signer, withTrailers else { return }
        guard let sig = trailers["x-amz-trailer-signature"] else { throw malformed("x-amz-trailer-signature missing") }
        let hash = Digest.sha256(Array(trailerText.utf8)).hex
        let toSign = "AWS4-HMAC-SHA256-TRAILER\n\(signer.amzDate)\n\(signer.scope)\n\(previousSignature)\n\(hash)"
        let expected = Digest.hmacSHA256(key: signer.signingKey, Array(toSign.utf8)).hex
        guard Sodium.constantTimeEqual(Array(expected.utf8), Array(sig.utf8)) else { throw S3Error.signatureMismatch() }
    }

    private func malformed(_ why: String) -> S3Error {
        S3Error(400, "IncompleteBody", "malformed aws-chunked body: \(why)")
    }
}
