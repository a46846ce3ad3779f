import TOMLKit

/// A config value, as the validator sees it: the TOML types settings take, or the name of one
/// they do not (float, date, table in an array), which every setting refuses.
enum TOMLValue: Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case array([TOMLValue])
    case other(String)

    var description: String {
        switch self {
        case .string(let s): s.debugDescription
        case .integer(let i): "\(i)"
        case .boolean(let b): "\(b)"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .other(let type): "a \(type)"
        }
    }

    init(_ v: any TOMLValueConvertible) {
        switch v.type {
        case .string: self = .string(v.string ?? "")
        case .int: self = .integer(v.int ?? 0)
        case .bool: self = .boolean(v.bool ?? false)
        case .array: self = .array((v.array.map { Array($0) } ?? []).map(TOMLValue.init))
        default: self = .other("\(v.type)")
        }
    }
}

/// A TOML file parsed by TOMLKit (toml++: the whole of TOML 1.0), flattened to dotted keys, each
/// with the line that sets it so errors can name it. A syntax error names the file and line.
struct TOMLDocument {
    var values: [String: (value: TOMLValue, line: Int?)] = [:]

    init(parsing text: String, file: String) throws(ConfigError) {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(file: file, key: nil, line: e.source.begin.line, problem: e.description)
        } catch {
            throw ConfigError(file: file, key: nil, line: nil, problem: "\(error)")
        }
        let lines = Self.keyLines(text)
        func flatten(_ t: TOMLTable, _ prefix: String) {
            for (k, v) in t {
                let path = prefix.isEmpty ? k : "\(prefix).\(k)"
                if v.type == .table, let sub = v.table { flatten(sub, path) } else { values[path] = (TOMLValue(v), lines[path]) }
            }
        }
        flatten(table, "")
    }

    /// The line of each `key = …` under its `[table]` header (bare or quoted keys, dotted or not).
    /// Keys set inside inline tables have none; their errors name the file and key only.
    static func keyLines(_ text: String) -> [String: Int] {
        var out: [String: Int] = [:], table = ""
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = raw.drop { $0 == " " || $0 == "\t" }
            if l.hasPrefix("[") && !l.hasPrefix("[[") {
                table = unquoted(l.dropFirst().prefix { $0 != "]" })
            } else if let eq = l.firstIndex(of: "="), !l.hasPrefix("#") {
                let key = unquoted(l[..<eq])
                guard !key.isEmpty else { continue }
                let path = table.isEmpty ? key : "\(table).\(key)"
                if out[path] == nil { out[path] = n + 1 }
            }
        }
        return out
    }

    static func unquoted(_ s: Substring) -> String {
        s.split(separator: ".").map { $0.trimmingCharacters(in: " \t\"'") }.joined(separator: ".")
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
