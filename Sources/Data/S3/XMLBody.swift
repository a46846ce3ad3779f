/// Parses the small XML request bodies S3 accepts into a tree; nil when not well-formed.
///
/// A strict parser of its own rather than Foundation's XMLParser: over libxml2 that one trapped on
/// invalid UTF-8 in a name and on a processing instruction without data, and leaked a string for
/// every error it reported (tools/fuzz found all three; the leak let a client grow a node's
/// memory without end). What S3 bodies use is accepted: an optional UTF-8 byte-order mark and
/// `<?xml …?>` declaration, elements with attributes (e.g. `xmlns`), text with the five named
/// entities and character references, CDATA sections and comments. Names keep their prefix
/// (`s3:Key`), as XMLParser gave them without namespace processing. Line ends in text are
/// normalized to LF as XML requires. No document type, no other processing instruction: a DTD is
/// where entity expansion lives, and no S3 body has one.
///
/// Bodies come from anyone, so the tree is bounded: S3's documents nest four deep, the largest
/// (CompleteMultipartUpload) lists 10,000 parts of a few elements each.
final class XMLNode {
    let name: String
    var text = ""
    var children: [XMLNode] = []
    init(name: String) { self.name = name }

    /// Deepest nesting accepted (the root is depth 1).
    static let maxDepth = 16
    /// Most elements accepted in one document (10,000 parts × PartNumber, ETag and checksums).
    static let maxElements = 1 << 16

    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }

    static func parse(_ bytes: [UInt8]) -> XMLNode? {
        guard String(validating: bytes, as: UTF8.self) != nil else { return nil }
        var p = XMLReader(bytes)
        return try? p.document()
    }
}

private struct XMLReader {
    struct Malformed: Error {}
    let b: [UInt8]
    var i = 0
    var elements = 0
    init(_ bytes: [UInt8]) { b = bytes }

    static let lt = UInt8(ascii: "<"), gt = UInt8(ascii: ">"), amp = UInt8(ascii: "&")

    func at(_ s: String) -> Bool { b[i...].starts(with: s.utf8) }
    static let whitespace: [UInt8] = [0x20, 0x09, 0x0A, 0x0D]
    var isSpace: Bool { i < b.count && Self.whitespace.contains(b[i]) }
    mutating func skipSpace() { while isSpace { i += 1 } }
    mutating func expect(_ s: String) throws(Malformed) {
        guard at(s) else { throw Malformed() }
        i += s.utf8.count
    }
    /// Moves past the next `end`, or fails if there is none.
    mutating func skip(past end: String) throws(Malformed) {
        let e = Array(end.utf8)
        while i < b.count {
            if b[i...].starts(with: e) { i += e.count; return }
            i += 1
        }
        throw Malformed()
    }

    mutating func document() throws(Malformed) -> XMLNode {
        if at("\u{FEFF}") { i += 3 }
        if at("<?xml"), i + 5 < b.count, Self.whitespace.contains(b[i + 5]) { try skip(past: "?>") }
        try misc()
        guard i < b.count, b[i] == Self.lt else { throw Malformed() }
        let root = try element(depth: 1)
        try misc()
        guard i == b.count else { throw Malformed() }
        return root
    }

    /// White space and comments, between the declaration, the root and the end.
    mutating func misc() throws(Malformed) {
        while true {
            skipSpace()
            if at("<!--") { try comment() } else { return }
        }
    }

    mutating func comment() throws(Malformed) {
        i += 4
        try skip(past: "--")
        guard i < b.count, b[i] == Self.gt else { throw Malformed() }  // no `--` inside a comment
        i += 1
    }

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":") || c >= 0x80
    }
    static func isName(_ c: UInt8) -> Bool {
        isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
    }

    mutating func name() throws(Malformed) -> String {
        let start = i
        guard i < b.count, Self.isNameStart(b[i]) else { throw Malformed() }
        while i < b.count, Self.isName(b[i]) { i += 1 }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    /// One element at `i` (on its `<`), with everything inside it.
    mutating func element(depth: Int) throws(Malformed) -> XMLNode {
        elements += 1
        guard depth <= XMLNode.maxDepth, elements <= XMLNode.maxElements else { throw Malformed() }
        i += 1
        let node = XMLNode(name: try name())
        while true {
            let spaced = isSpace
            skipSpace()
            guard i < b.count else { throw Malformed() }
            if at("/>") { i += 2; return node }
            if b[i] == Self.gt { i += 1; break }
            guard spaced else { throw Malformed() }
            _ = try name()
            skipSpace()
            try expect("=")
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'") else { throw Malformed() }
            let quote = b[i]
            i += 1
            while i < b.count, b[i] != quote {
                guard b[i] != Self.lt else { throw Malformed() }
                if b[i] == Self.amp { _ = try reference() } else { i += 1 }
            }
            guard i < b.count else { throw Malformed() }
            i += 1
        }
        var text: [UInt8] = []
        while true {
            guard i < b.count else { throw Malformed() }
            switch b[i] {
            case Self.lt:
                if at("</") {
                    i += 2
                    guard try name() == node.name else { throw Malformed() }
                    skipSpace()
                    try expect(">")
                    node.text = String(decoding: text, as: UTF8.self)
                    return node
                } else if at("<!--") {
                    try comment()
                } else if at("<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    text += Self.normalizingLineEnds(b[start..<(i - 3)])
                } else {
                    node.children.append(try element(depth: depth + 1))
                }
            case Self.amp:
                text += try reference()
            default:
                let start = i
                while i < b.count, b[i] != Self.lt, b[i] != Self.amp { i += 1 }
                text += Self.normalizingLineEnds(b[start..<i])
            }
        }
    }

    /// CR LF and lone CR become LF (XML 1.0 §2.11), in text and CDATA alike.
    static func normalizingLineEnds(_ s: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var cr = false
        for c in s {
            if c == 0x0A && cr { cr = false; continue }
            cr = c == 0x0D
            out.append(cr ? 0x0A : c)
        }
        return out
    }

    /// `&name;` or `&#N;` / `&#xH;` at `i`: the UTF-8 of what it stands for.
    mutating func reference() throws(Malformed) -> [UInt8] {
        i += 1
        guard let semi = b[i...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else { throw Malformed() }
        let body = String(decoding: b[i..<semi], as: UTF8.self)
        i = semi + 1
        switch body {
        case "lt": return [Self.lt]
        case "gt": return [Self.gt]
        case "amp": return [Self.amp]
        case "apos": return [UInt8(ascii: "'")]
        case "quot": return [UInt8(ascii: "\"")]
        default:
            guard body.hasPrefix("#") else { throw Malformed() }
            let digits = body.dropFirst()
            let hex = digits.hasPrefix("x")
            let number = hex ? digits.dropFirst() : digits
            guard !number.isEmpty, number.count <= 8, let v = UInt32(number, radix: hex ? 16 : 10),
                v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v != 0xFFFE && v != 0xFFFF),
                let scalar = Unicode.Scalar(v)
            else { throw Malformed() }
            return Array(String(Character(scalar)).utf8)
        }
    }
}
