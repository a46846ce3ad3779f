/// A configuration problem, naming the file, the key and (when known) the line.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String?
    public var line: Int?
    public var problem: String

    public var description: String {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let key { return "\(where_): \(key) \(problem)" }
        return "\(where_): \(problem)"
    }
}

/// Host and port to listen on.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var description: String { "\(host):\(port)" }

    init?(_ s: String) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host; self.port = port
    }
}

/// One node's validated configuration.
public struct NodeConfig: Sendable, Equatable {
    public var name: String
    public var dataDir: String
    public var s3Listen: ListenAddress
    public var region: String
    public var baseDomain: String?

    /// The embedded default: one node, data under `./.stacks/`, S3 on loopback.
    /// nil when `s3Listen` is not host:port.
    public static func development(dataDir: String = ".stacks", s3Listen: String = "127.0.0.1:9000") -> NodeConfig? {
        ListenAddress(s3Listen).map { NodeConfig(name: "dev", dataDir: dataDir, s3Listen: $0, region: "us-east-1", baseDomain: nil) }
    }

    /// Every key the config may hold, with its meaning (shown in errors for unknown keys).
    static let keys: [String: String] = [
        "node.name": "this node's name (string)",
        "node.data_dir": "directory for this node's data (string, required)",
        "s3.listen": "S3 endpoint address host:port (string)",
        "s3.region": "region clients sign for (string)",
        "s3.base_domain": "domain for virtual-host style bucket addressing (string)",
    ]

    /// Parses and validates a TOML config; every error names the key and the file.
    public init(toml text: String, file: String) throws(ConfigError) {
        let doc = try TOMLDocument(parsing: text, file: file)
        for (key, entry) in doc.values where Self.keys[key] == nil {
            throw ConfigError(file: file, key: key, line: entry.line,
                              problem: "is not a known setting (known: \(Self.keys.keys.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) throws(ConfigError) -> String? {
            guard let e = doc.values[key] else { return nil }
            guard case .string(let s) = e.value else {
                throw ConfigError(file: file, key: key, line: e.line, problem: "must be a string, got \(e.value)")
            }
            return s
        }
        func line(_ key: String) -> Int? { doc.values[key]?.line }

        guard let dataDir = try string("node.data_dir"), !dataDir.isEmpty else {
            throw ConfigError(file: file, key: "node.data_dir", line: nil, problem: "is required")
        }
        self.dataDir = dataDir
        name = try string("node.name") ?? "node"
        guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw ConfigError(file: file, key: "node.name", line: line("node.name"), problem: "must be 1-64 letters, digits, '-', '_' or '.'")
        }
        let listen = try string("s3.listen") ?? "127.0.0.1:9000"
        guard let addr = ListenAddress(listen) else {
            throw ConfigError(file: file, key: "s3.listen", line: line("s3.listen"), problem: "must be host:port, got \(listen.debugDescription)")
        }
        s3Listen = addr
        region = try string("s3.region") ?? "us-east-1"
        guard !region.isEmpty, region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw ConfigError(file: file, key: "s3.region", line: line("s3.region"), problem: "must be letters, digits and '-'")
        }
        baseDomain = try string("s3.base_domain")
        if let d = baseDomain, d.isEmpty || d.hasPrefix(".") {
            throw ConfigError(file: file, key: "s3.base_domain", line: line("s3.base_domain"), problem: "must be a domain like s3.example.com")
        }
    }

    init(name: String, dataDir: String, s3Listen: ListenAddress, region: String, baseDomain: String?) {
        self.name = name; self.dataDir = dataDir; self.s3Listen = s3Listen; self.region = region; self.baseDomain = baseDomain
    }
}
