import ChunkStore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Objects
import S3

/// One running node: the object store and the S3 endpoint, composed from the config.
public struct Agent: Sendable {
    public let config: NodeConfig
    public let logger: Logger

    public init(config: NodeConfig) {
        self.config = config
        var logger = Logger(label: "stacks")
        logger[metadataKey: "node"] = "\(config.name)"
        logger.logLevel = ProcessInfo.processInfo.environment["STACKS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        self.logger = logger
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Runs until SIGINT or SIGTERM. `announce` is called once the S3 endpoint accepts connections.
    public func run(announce: @escaping @Sendable (_ endpoint: String, _ newKey: (id: String, secret: String)?) -> Void) async throws {
        try Files.makeDirectory(config.dataDir)
        try Files.writeAtomically(Array("\(getpid())\n".utf8), to: "\(config.dataDir)/pid")
        let store = try ObjectStore(root: "\(config.dataDir)/store", clock: Self.nowMs)
        let keys = try AccessKeys(dataDir: config.dataDir)
        let newKey = keys.all.isEmpty ? try keys.create() : nil
        let responder = S3Responder(store: store, credentials: keys,
                                    settings: S3Settings(region: config.region, baseDomain: config.baseDomain),
                                    clock: Self.nowMs, logger: logger)
        let config = self.config, logger = self.logger
        let envPath = "\(config.dataDir)/env"
        try? Files.remove(envPath)  // the env file appears only once this run's endpoint answers
        let app = Application(
            responder: responder,
            server: .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()])),
            configuration: .init(address: .hostname(config.s3Listen.host, port: config.s3Listen.port), serverName: "Stacks"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? config.s3Listen.port
                let endpoint = "http://\(config.s3Listen.host):\(port)"
                let key = keys.all.first!
                let env = """
                    AWS_ACCESS_KEY_ID=\(key.id)
                    AWS_SECRET_ACCESS_KEY=\(key.secret)
                    AWS_DEFAULT_REGION=\(config.region)
                    STACKS_S3_ENDPOINT=\(endpoint)

                    """
                do { try Files.writeAtomically(Array(env.utf8), to: envPath) } catch {
                    logger.error("cannot write \(envPath): \(error)")
                }
                announce(endpoint, newKey)
            },
            logger: logger
        )
        try await app.runService()
    }
}
