import ArgumentParser
import Cluster
import Control
import Foundation
import Node
import Raft
import Security

/// Hidden: a member that misbehaves with its real credential, for the tests that show the
/// cluster refuses it. It opens a Raft connection with the node handshake, as the node would,
/// then sends what no correct node sends.
struct DebugCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug", abstract: "Tools for tests (not for operators).", shouldDisplay: false, subcommands: [RaftFrame.self, Unseal.self])

    /// What a removed node's disk keeps: every S3 secret its log and secrets key open.
    struct Unseal: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "unseal", abstract: "Print each S3 key id and secret a stopped node's data directory can open.")
        @Option(help: "The stopped node's data directory.") var dataDir: String

        func run() throws {
            let identity = try NodeIdentity(dataDir: dataDir)
            let state = try RaftService.committedState(directory: "\(dataDir)/raft")
            guard let key = state.secretsKey ?? identity.secretsKey else { throw ValidationError("\(dataDir) holds no secrets key") }
            for u in state.users.values.sorted(by: { $0.id < $1.id }) {
                for sealed in [u.sealedSecret] + (u.previousSealed.map { [$0] } ?? []) {
                    if let s = SecretsKeys.open(sealed, id: u.id, key: key) { print("\(u.id) \(s)") }
                }
            }
        }
    }

    struct RaftFrame: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raft-frame", abstract: "Send one Raft frame over an authenticated connection, in any name.")
        @Option(help: "The data directory whose credential opens the connection.") var dataDir: String
        @Option(help: "The receiving node's Raft address (host:port).") var to: String
        @Option(help: "The receiving node's name.") var toName: String
        @Option(help: "The name the frame claims to come from (default: the credential's).") var from: String?
        @Option(help: "vote (a vote request at term 1000000) or token (forward createToken).") var frame: String
        @Option(help: "Sign a new credential for this name with the data directory's cluster key, and use it.") var mint: String?

        func run() throws {
            let identity = try NodeIdentity(dataDir: dataDir)
            guard var proof = identity.proof else { throw ValidationError("\(dataDir) holds no credential") }
            if let mint {
                let key = NodeKey.generate()
                guard let signing = identity.clusterKey,
                    let c = signing.issue(
                        clusterID: proof.credential.clusterID, node: mint, publicKey: key.publicKey, role: .all,
                        issuedMs: Int64(Date().timeIntervalSince1970 * 1000))
                else { throw ValidationError("\(dataDir) holds no cluster signing key") }
                proof = JoinDoorman.Proof(clusterKey: proof.clusterKey, credential: c, nodeKey: key)
            }
            let me = proof.credential
            let initiator = NodeHandshake.Initiator(
                identity: .init(clusterKey: proof.clusterKey, credential: me, nodeKey: proof.nodeKey), purpose: .raft,
                ephemeral: Sodium.KeyExchange.keyPair(), admit: { _ in nil })
            let body: Frame
            switch frame {
            case "vote": body = .raft(.vote(term: Term(1_000_000), lastIndex: LogIndex(1_000_000), lastTerm: Term(999_999), transfer: true))
            case "token":
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                let record = TokenRecord(
                    id: "debug" + Sodium.randomBytes(4).hex, secretHash: Sodium.randomBytes(32), role: "all", createdMs: now, expiresMs: now + 3_600_000,
                    usesLeft: 9)
                body = .forward(Request(id: .random(), command: .createToken(record)).encoded)
            default: throw ValidationError("--frame is vote or token")
            }
            let socket = try Socket(connectingTo: to)
            defer { socket.close() }
            try socket.writeFrame(initiator.hello)
            var (handshakeProof, session) = try initiator.finish(answering: try socket.readFrame())
            try socket.writeFrame(handshakeProof)
            let plain = RaftWire.encode(
                AddressedFrame(from: from ?? me.node, fromAddress: "127.0.0.1:1", cluster: me.clusterID, to: toName, frame: body))
            try socket.writeFrame(session.seal(plain))
            print("sent")
        }
    }

    /// A blocking TCP socket speaking length-prefixed (u32, little-endian) frames.
    struct Socket {
        let fd: Int32

        init(connectingTo address: String) throws {
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
                throw ValidationError("not a host:port address: \(address)")
            }
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            guard inet_pton(AF_INET, String(address[..<colon]), &sa.sin_addr) == 1 else { throw ValidationError("not an IPv4 address: \(address)") }
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let size = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } }
            guard fd >= 0, rc == 0 else { throw ValidationError("cannot connect to \(address): errno \(errno)") }
        }

        func close() { _ = Glibc.close(fd) }

        func writeFrame(_ bytes: [UInt8]) throws {
            let n = UInt32(bytes.count)
            let all = [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)] + bytes
            var sent = 0
            while sent < all.count {
                let r = all[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                guard r > 0 else { throw ValidationError("the peer closed the connection") }
                sent += r
            }
        }

        func readFrame() throws -> [UInt8] {
            let header = try read(4)
            let n = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
            guard n <= NodeHandshake.maxMessageBytes else { throw ValidationError("the peer's frame of \(n) bytes is too large") }
            return try read(n)
        }

        func read(_ n: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: n), got = 0
            while got < n {
                let r = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard r > 0 else { throw ValidationError("the peer closed the connection (it refused this node)") }
                got += r
            }
            return out
        }
    }
}
