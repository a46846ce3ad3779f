import DataRPC
import Files
import Membership
import NIOCore
import Security

/// The joining side of `stacks join`: enrols this node through a member's data port with a join
/// token and keeps what it receives in the data dir (identity, keyring, seeds).
public enum Enrolment {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Redirects followed at most (a member without the signing key names those that have it).
    static let maxHops = 3

    /// `DATA_DIR/identity/seeds`: gossip addresses the grant named, one per line.
    static func seedsPath(_ dataDir: String) -> String { "\(dataDir)/identity/seeds" }

    /// The seeds a past enrolment saved (empty if none).
    public static func savedSeeds(dataDir: String) -> [String] {
        guard let b = try? Files.read(seedsPath(dataDir)) else { return [] }
        return String(decoding: b, as: UTF8.self).split(separator: "\n").map(String.init).filter { ListenAddress($0) != nil }
    }

    /// Enrols `name` through `seed` (a member's data address, `stacks status`' `address`). The
    /// node key is made and saved first, so asking again after a lost answer is the same
    /// enrolment. Throws with the member's reason when refused; nothing is saved but the key then.
    @discardableResult
    public static func enrol(seed: String, token tokenText: String, name: String, dataDir: String) async throws -> JoinGrant {
        guard let token = JoinToken(text: tokenText) else {
            throw Failure("that is not a join token (it looks like \(JoinToken.prefix)-…, as `stacks token create` prints it)")
        }
        guard ListenAddress(seed) != nil else { throw Failure("the seed must be host:port (a member's address in `stacks status`), got \(seed)") }
        try Files.makeDirectory(dataDir)
        var identity = try NodeIdentity(dataDir: dataDir)
        if let c = identity.credential { throw Failure("\(dataDir) already holds the credential of node \(c.node) in cluster \(c.clusterID)") }
        let nodeKey = identity.nodeKey ?? NodeKey.generate()
        if identity.nodeKey == nil { try identity.save(nodeKey: nodeKey) }
        var address = seed, tried: Set<String> = []
        for _ in 0...maxHops {
            tried.insert(address)
            let answer: JoinAnswer
            do { answer = try await attempt(address, token: token, name: name, nodeKey: nodeKey) } catch let e as HandshakeError {
                throw Failure("join through \(address) refused: \(e.description)")
            } catch {
                throw Failure("cannot reach \(address): \(error)")
            }
            switch answer {
            case .accepted(let g):
                let signs = !g.signingKey.isEmpty && Sodium.Sign.publicKey(of: g.signingKey) == g.clusterKey
                try identity.save(clusterKey: ClusterKey(publicKey: g.clusterKey, secretKey: signs ? g.signingKey : nil))
                try identity.save(members: g.members)
                var ring = try Keyring(primary: g.keyring[0])
                for k in g.keyring.dropFirst() { ring.install(k) }
                try ring.save(path: "\(dataDir)/keyring")
                try Files.writeAtomically(Array(g.seeds.map { $0 + "\n" }.joined().utf8), to: seedsPath(dataDir))
                if g.secretsKey.count == Sodium.AEAD.keyBytes { try identity.save(secretsKey: g.secretsKey) }
                try identity.save(credential: g.credential)  // last: its presence means enrolled
                return g
            case .refused(let why):
                throw Failure("join through \(address) refused: \(why)")
            case .redirect(let to):
                guard let next = to.first(where: { !tried.contains($0) && ListenAddress($0) != nil }) else {
                    throw Failure("no member that signs credentials could be reached (tried \(tried.sorted().joined(separator: ", ")))")
                }
                address = next
            }
        }
        throw Failure("redirected more than \(maxHops) times")
    }

    static func attempt(_ address: String, token: JoinToken, name: String, nodeKey: NodeKey) async throws -> JoinAnswer {
        let conn = try await DataConnection.open(
            to: address, sendingFirst: JoinHandshake.magic, maxFrameBytes: JoinHandshake.maxMessageBytes, timeout: .seconds(5))
        defer { conn.close() }
        _ = try await conn.firstBytes()  // the member's data challenge, unused here
        var joiner = Joiner(token: token, name: name, nodeKey: nodeKey, ephemeral: Sodium.KeyExchange.keyPair())
        try await conn.sendPlain(joiner.hello)
        let proof = try await conn.receivePlain(timeout: .seconds(10), maxBytes: JoinHandshake.maxMessageBytes)
        let request: [UInt8]
        do { request = try joiner.request(answering: proof) } catch {
            if error.otherCluster { try? await conn.sendPlain(JoinHandshake.otherCluster) }
            throw error
        }
        try await conn.sendPlain(request)
        // Admission commits through Raft: give it longer than one round trip.
        return try joiner.answer(try await conn.receivePlain(timeout: .seconds(30), maxBytes: JoinHandshake.maxMessageBytes))
    }
}
