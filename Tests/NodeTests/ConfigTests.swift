import Testing
@testable import Node

@Suite struct ConfigTests {
    @Test func validConfigParses() throws {
        let c = try NodeConfig(toml: """
            # a node
            [node]
            name = "node-1"
            data_dir = '/var/lib/stacks'   # literal string

            [s3]
            listen = "127.0.0.1:9000"
            region = "eu-west-1"
            base_domain = "s3.local"
            """, file: "n.toml")
        #expect(c == NodeConfig(name: "node-1", dataDir: "/var/lib/stacks", s3Listen: ListenAddress("127.0.0.1:9000")!, region: "eu-west-1", baseDomain: "s3.local"))
    }

    @Test(arguments: [
        ("[node]\ndata_dir = \"/d\"\nlisten = \"x\"", "n.toml:3: node.listen is not a known setting"),
        ("[node]\ndata_dir = 5", "n.toml:2: node.data_dir must be a string"),
        ("[node]\nname = \"a\"", "n.toml: node.data_dir is required"),
        ("[node]\ndata_dir = \"/d\"\n[s3]\nlisten = \"nowhere\"", "n.toml:4: s3.listen must be host:port"),
        ("[node\ndata_dir = \"/d\"", "n.toml:1: expected ']'"),
        ("[node]\ndata_dir = \"/d\"\ndata_dir = \"/e\"", "n.toml:3: node.data_dir is defined twice"),
        ("[node]\ndata_dir = \"/d", "n.toml:2: unterminated string"),
    ])
    func errorsNameKeyFileAndLine(text: String, expected: String) {
        do {
            _ = try NodeConfig(toml: text, file: "n.toml")
            Issue.record("accepted bad config: \(text)")
        } catch {
            #expect(error.description.hasPrefix(expected), "got: \(error.description)")
        }
    }

    @Test func shippedSamplesAreValid() throws {
        for name in ["single-node.toml"] {
            let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
            let text = try String(contentsOfFile: "/\(path)/cluster-configs/\(name)", encoding: .utf8)
            _ = try NodeConfig(toml: text, file: name)
        }
    }
}
