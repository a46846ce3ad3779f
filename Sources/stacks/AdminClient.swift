import Foundation
import Node

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client for the node's loopback admin API (one request per connection),
/// so the CLI needs no HTTP library. The node is found through `DATA_DIR/admin`.
struct AdminClient {
    let host: String
    let port: Int
    let token: String

    init(dataDir: String) throws {
        let file: AdminFile
        do { file = try AdminFile.load(path: "\(dataDir)/admin") } catch {
            throw CLIError("no running node found in \(dataDir): \(dataDir)/admin is missing (is `stacks agent` running with this data dir?)")
        }
        guard let rest = file.url.split(separator: "//").last, let colon = rest.lastIndex(of: ":"),
            let port = Int(rest[rest.index(after: colon)...])
        else { throw CLIError("bad url in \(dataDir)/admin: \(file.url)") }
        host = String(rest[..<colon]); self.port = port; token = file.token
    }

    /// Sends a request and returns (status, body).
    func request(_ method: String, _ path: String, body: Data? = nil, waitSeconds: Int = 0) throws -> (Int, Data) {
        let (status, _, payload) = try exchange(method, path, body: body, waitSeconds: waitSeconds)
        return (status, payload)
    }

    /// A view that can be watched (`/v1/status`, `/v1/members`): its body and the change version
    /// it shows. With `since`, the node answers once the version has passed it, or after `wait` s.
    func view(_ path: String, since: UInt64?, wait: Int) throws -> (Data, UInt64?) {
        let query = since.map { "\(path.contains("?") ? "&" : "?")since=\($0)&wait=\(wait)" } ?? ""
        let (status, head, body) = try exchange("GET", path + query, body: nil, waitSeconds: since == nil ? 0 : wait)
        guard status == 200 else { _ = try decode(status, body) as [String: String]; return (body, nil) }
        let version = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-stacks-change:") }
            .flatMap { UInt64($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        return (body, version)
    }

    /// Sends a request and returns (status, response head, body); waits `waitSeconds` longer than
    /// the usual 10 s for an answer (a long poll).
    private func exchange(_ method: String, _ path: String, body: Data?, waitSeconds: Int) throws -> (Int, String, Data) {
        var hints = addrinfo(
            ai_flags: 0, ai_family: AF_UNSPEC, ai_socktype: Int32(SOCK_STREAM.rawValue), ai_protocol: 0,
            ai_addrlen: 0, ai_addr: nil, ai_canonname: nil, ai_next: nil)
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let ai = info else { throw CLIError("cannot resolve \(host)") }
        defer { freeaddrinfo(info) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 10 + waitSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            throw CLIError("cannot reach the node's admin API at \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + Array(body ?? Data())
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw CLIError("send to admin API failed") }
            sent += n
        }
        var response = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw CLIError("admin API did not answer") }
            if n == 0 { break }
            response.append(contentsOf: buf[0..<n])
        }
        guard let split = response.firstRange(of: Array("\r\n\r\n".utf8)) else { throw CLIError("malformed admin API response") }
        let headText = String(decoding: response[..<split.lowerBound], as: UTF8.self)
        let status = Int(headText.split(separator: " ").dropFirst().first ?? "") ?? 0
        var payload = Array(response[split.upperBound...])
        if headText.lowercased().contains("transfer-encoding: chunked") { payload = Self.dechunk(payload) }
        return (status, headText, Data(payload))
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [], i = 0
        while i < b.count, let eol = b[i...].firstRange(of: [13, 10]) {
            guard let size = Int(String(decoding: b[i..<eol.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16), size > 0 else { break }
            let start = eol.upperBound
            out += b[start..<min(start + size, b.count)]
            i = start + size + 2
        }
        return out
    }

    func get<T: Decodable>(_ path: String, as: T.Type) throws -> T {
        let (status, body) = try request("GET", path)
        return try decode(status, body)
    }

    func post<T: Decodable>(_ path: String, json: some Encodable, as: T.Type) throws -> T {
        let (status, body) = try request("POST", path, body: try JSONEncoder().encode(json))
        return try decode(status, body)
    }

    func decode<T: Decodable>(_ status: Int, _ body: Data) throws -> T {
        guard status == 200 else {
            let message = (try? JSONDecoder().decode([String: String].self, from: body))?["error"] ?? String(decoding: body, as: UTF8.self)
            throw CLIError("admin API answered \(status): \(message)")
        }
        return try JSONDecoder().decode(T.self, from: body)
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
