import Foundation
import Gossip
import Logging
import ServiceLifecycle
import Telemetry
import Testing

@testable import Membership

/// Real UDP sockets on loopback, not the simulator: a state of 200 members only travels in
/// push-pull parts far larger than NIO's 2 KiB default datagram buffer. tools/test runs this
/// suite in a `swift test` of its own: in the parallel run, beside the CPU-bound simulation suites,
/// it timed out at 10 s and again at 120 s (alone it takes well under a second).
@Suite struct GossipSocketTests {
    static func freeUDPPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// Sends one sealed gossip datagram to 127.0.0.1:`port`.
    static func inject(_ packet: Packet, keyring: Keyring, port: Int) {
        let datagram = keyring.sealDatagram(GossipService.compress(WireFormat.encode(packet)), stamp: GossipService.wallClock())
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var to = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: UInt16(port).bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")),
            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        _ = datagram.withUnsafeBytes { buf in
            withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    static func waitFor(_ what: String, seconds: Double, _ ok: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try await !ok() {
            guard Date() < deadline else { Issue.record("\(what) not reached within \(seconds) s"); return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func aNewNodeLearnsTwoHundredMembersOverRealSockets() async throws {
        let dir = try Fixtures.temporaryDirectory("gossip-sockets")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keyring = try Keyring(primary: Keyring.parse(base64: Keyring.generateKey()))
        let logger = Logger(label: "test")
        let pa = Self.freeUDPPort(), pb = Self.freeUDPPort()
        let a = GossipService(
            name: "a", listen: ListenAddress("127.0.0.1:\(pa)")!, tags: [:], seeds: [], keyring: keyring,
            keyringPath: "\(dir)/a.keyring", seed: 1, logger: logger)
        let group = ServiceGroup(services: [a], logger: logger)
        let running = Task { try await group.run() }
        defer { running.cancel() }

        // 200 members, each with a few tags, as rumors from a member that is not there; sent
        // again until a has them all (a binds its socket some time after `run` starts).
        let fakes = (0..<200).map { "member-\($0)" }
        // Random tag values: the compressed push-pull parts stay near their 8 KiB budget.
        let racks = Dictionary(uniqueKeysWithValues: fakes.map { ($0, (0..<24).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()) })
        try await Self.waitFor("a knows the 200", seconds: 120) {
            for batch in stride(from: 0, to: fakes.count, by: 10) {
                let rumors = fakes[batch..<(batch + 10)].map { name in
                    Rumor.alive(
                        name: name, address: "127.0.0.1:9", incarnation: Incarnation(1), tags: ["zone": "zone-\(name.suffix(1))", "rack": racks[name]!])
                }
                Self.inject(Packet(from: "injector", fromAddress: "127.0.0.1:9", message: .gossip, rumors: rumors), keyring: keyring, port: pa)
            }
            return Set(try await a.members().map(\.name)).isSuperset(of: fakes)
        }

        // A node started now learns all of them from a's push-pull (parts of up to 8 KiB).
        let exporter = MetricsExporter()
        let b = GossipService(
            name: "b", listen: ListenAddress("127.0.0.1:\(pb)")!, tags: [:], seeds: ["127.0.0.1:\(pa)"], keyring: keyring,
            keyringPath: "\(dir)/b.keyring", seed: 2, logger: logger, metrics: exporter.metrics)
        let groupB = ServiceGroup(services: [b], logger: logger)
        let runningB = Task { try await groupB.run() }
        defer { runningB.cancel() }
        try await Self.waitFor("b learns the 200", seconds: 120) { Set(try await b.members().map(\.name)).isSuperset(of: fakes + ["a"]) }
        let text = await exporter.exposition()
        #expect(scraped(text, #"stacks_gossip_packets_total{direction="received",kind="push_pull"}"#).map { $0 > 0 } == true)
        for reason in ["unauthenticated", "malformed", "replayed", "stale", "clock_skew"] {
            #expect(scraped(text, "stacks_gossip_dropped_total{reason=\"\(reason)\"}") == 0, "datagrams arrived cut and failed to open")
        }
        await group.triggerGracefulShutdown()
        await groupB.triggerGracefulShutdown()
    }
}
