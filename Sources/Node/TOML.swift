/// A TOML subset for node configs: `[table]` and `[a.b]` headers, `key = value` with basic and
/// literal strings, integers, booleans and one-line arrays of those, and `#` comments.
/// Anything else is an error naming the file and line.
enum TOMLValue: Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case array([TOMLValue])

    var description: String {
        switch self {
        case .string(let s): s.debugDescription
        case .integer(let i): "\(i)"
        case .boolean(let b): "\(b)"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

struct TOMLDocument {
    /// Dotted path ("s3.listen") → value and the line it came from.
    var values: [String: (value: TOMLValue, line: Int)] = [:]

    init(parsing text: String, file: String) throws(ConfigError) {
        var table = ""
        for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = n + 1
            var p = Parser(chars: Array(rawLine.unicodeScalars), file: file, line: line)
            p.skipSpace()
            if p.atEnd || p.peek == "#" { continue }
            if p.peek == "[" {
                p.advance()
                let name = try p.key()
                try p.expect("]")
                p.skipSpace()
                try p.expectEndOfLine()
                table = name
                continue
            }
            let key = try p.key()
            try p.expect("=")
            p.skipSpace()
            let value = try p.value()
            p.skipSpace()
            try p.expectEndOfLine()
            let path = table.isEmpty ? key : "\(table).\(key)"
            guard values[path] == nil else { throw ConfigError(file: file, key: path, line: line, problem: "is defined twice") }
            values[path] = (value, line)
        }
    }
}

private struct Parser {
    let chars: [Unicode.Scalar]
    let file: String
    let line: Int
    var i = 0

    var atEnd: Bool { i >= chars.count || chars[i] == "\r" && i == chars.count - 1 }
    var peek: Unicode.Scalar { chars[i] }
    mutating func advance() { i += 1 }

    func fail(_ what: String) -> ConfigError { ConfigError(file: file, key: nil, line: line, problem: what) }

    mutating func skipSpace() { while i < chars.count && (chars[i] == " " || chars[i] == "\t") { i += 1 } }

    mutating func expect(_ c: Unicode.Scalar) throws(ConfigError) {
        skipSpace()
        guard !atEnd, peek == c else { throw fail("expected '\(c)'") }
        advance()
    }

    mutating func expectEndOfLine() throws(ConfigError) {
        skipSpace()
        guard atEnd || peek == "#" else { throw fail("unexpected text after the value") }
    }

    mutating func key() throws(ConfigError) -> String {
        var parts: [String] = []
        repeat {
            skipSpace()
            var s = ""
            while !atEnd, peek.properties.isAlphabetic || ("0"..."9").contains(peek) || peek == "_" || peek == "-" {
                s.unicodeScalars.append(peek); advance()
            }
            guard !s.isEmpty else { throw fail("expected a key") }
            parts.append(s)
            skipSpace()
        } while !atEnd && peek == "."
            && {
                advance(); return true
            }()
        return parts.joined(separator: ".")
    }

    mutating func value() throws(ConfigError) -> TOMLValue {
        guard !atEnd else { throw fail("missing value") }
        switch peek {
        case "\"": return .string(try basicString())
        case "'":
            advance()
            var s = ""
            while !atEnd && peek != "'" { s.unicodeScalars.append(peek); advance() }
            guard !atEnd else { throw fail("unterminated string") }
            advance()
            return .string(s)
        case "[":
            advance()
            var items: [TOMLValue] = []
            skipSpace()
            while !atEnd && peek != "]" {
                items.append(try value())
                skipSpace()
                if !atEnd && peek == "," { advance(); skipSpace() }
            }
            guard !atEnd else { throw fail("arrays must close on the same line") }
            advance()
            return .array(items)
        case "t", "f":
            var s = ""
            while !atEnd && peek.properties.isAlphabetic { s.unicodeScalars.append(peek); advance() }
            guard s == "true" || s == "false" else { throw fail("unknown value '\(s)'") }
            return .boolean(s == "true")
        default:
            var s = ""
            while !atEnd && (("0"..."9").contains(peek) || peek == "-" || peek == "+" || peek == "_") {
                if peek != "_" { s.unicodeScalars.append(peek) }
                advance()
            }
            guard let n = Int(s) else { throw fail("expected a string, integer, boolean or array") }
            return .integer(n)
        }
    }

    mutating func basicString() throws(ConfigError) -> String {
        advance()
        var s = ""
        while !atEnd && peek != "\"" {
            if peek == "\\" {
                advance()
                guard !atEnd else { break }
                switch peek {
                case "n": s += "\n"
                case "t": s += "\t"
                case "\\": s += "\\"
                case "\"": s += "\""
                default: throw fail("unsupported escape '\\\(peek)'")
                }
            } else {
                s.unicodeScalars.append(peek)
            }
            advance()
        }
        guard !atEnd else { throw fail("unterminated string") }
        advance()
        return s
    }
}
