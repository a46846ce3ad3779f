import Foundation

/// Scenario files in the style of etcd's `testdata/*.txt` (cockroachdb/datadriven): commands in,
/// the exact trace out. The first line says what the file proves; then blocks of
///
///     command arg arg
///     ----
///     the expected output, one or more lines
///
/// separated by a blank line. Lines starting with `#` between blocks are comments. With
/// `STACKS_REWRITE=1` the file is rewritten with the actual output, to be reviewed as a diff.
public enum DataDriven {
    public struct Command: Sendable {
        public var name: String
        public var args: [String]
        /// Line number in the file, for messages.
        public var line: Int
        /// `key=value` arguments.
        public func value(_ key: String) -> String? {
            args.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        /// Arguments without `=`.
        public var positional: [String] { args.filter { !$0.contains("=") } }
    }

    struct Block {
        var prelude: [String]
        var command: String
        var line: Int
        var expected: [String]
    }

    static func parse(_ text: String) -> (blocks: [Block], trailer: [String], error: String?) {
        let lines = text.components(separatedBy: "\n")
        var blocks: [Block] = [], prelude: [String] = [], i = 0
        while i < lines.count {
            let l = lines[i]
            if l.hasPrefix("#") || l.trimmingCharacters(in: .whitespaces).isEmpty { prelude.append(l); i += 1; continue }
            guard i + 1 < lines.count, lines[i + 1] == "----" else { return (blocks, prelude, "line \(i + 1): '\(l)' is not followed by ----") }
            var expected: [String] = []
            var j = i + 2
            while j < lines.count, !lines[j].isEmpty { expected.append(lines[j]); j += 1 }
            blocks.append(Block(prelude: prelude, command: l, line: i + 1, expected: expected))
            prelude = []
            i = j
        }
        return (blocks, prelude, nil)
    }

    /// Runs every command of the file at `path` through `run` and returns what differs (empty:
    /// the trace is exactly as written). The first line must be a `#` comment saying what the
    /// file proves.
    public static func check(_ path: String, _ run: (Command) -> String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return ["cannot read \(path)"] }
        guard text.hasPrefix("# ") else { return ["\(path): the first line must say what the file proves (# ...)"] }
        let (blocks, trailer, error) = parse(text)
        if let error { return ["\(path): \(error)"] }
        var problems: [String] = []
        var rewritten: [String] = []
        for b in blocks {
            let words = b.command.split(separator: " ").map(String.init)
            let actual = run(Command(name: words[0], args: Array(words.dropFirst()), line: b.line))
            let actualLines = actual.isEmpty ? ["ok"] : actual.components(separatedBy: "\n")
            if actualLines != b.expected {
                problems.append(
                    "\(path):\(b.line): \(b.command)\n  expected:\n    \(b.expected.joined(separator: "\n    "))\n  got:\n    \(actualLines.joined(separator: "\n    "))"
                )
            }
            rewritten += b.prelude + [b.command, "----"] + actualLines
        }
        if ProcessInfo.processInfo.environment["STACKS_REWRITE"] == "1" {
            let body = (rewritten + trailer).joined(separator: "\n")
            try? body.write(toFile: path, atomically: true, encoding: .utf8)
            return []
        }
        return problems
    }

    /// The `.txt` files of a directory, sorted.
    public static func files(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".txt") }.sorted().map { directory + "/" + $0 }
    }
}
