import Testing

@testable import Membership
@testable import Node

@Suite struct ConfigTests {
    @Test func validConfigParses() throws {
        let c = try NodeConfig(
            toml: """
                # a node
                [node]
                name = "node-1"
                data_dir = '/var/lib/stacks'   # literal string

                [s3]
                listen = "127.0.0.1:9000"
                region = "eu-west-1"
                base_domain = "s3.local"

                [gossip]
                listen = "127.0.0.2:7946"
                seeds = ["127.0.0.1:7946", "127.0.0.3:7946"]
                key = "\(String(repeating: "A", count: 43))="

                [admin]
                listen = "127.0.0.1:9101"

                [raft]
                listen = "127.0.0.1:7101"
                bootstrap = false
                voters = 3
                dead_voter_after = 30
                snapshot_every = 5000

                [tags]
                zone = "a"
                hypervisor = "kvm"
                """, file: "n.toml")
        #expect(c.raftListen == ListenAddress("127.0.0.1:7101") && c.bootstrap == false && c.voters == 3)
        #expect(c.deadVoterAfter == .seconds(30) && c.snapshotEvery == 5000)
        #expect(c.name == "node-1" && c.dataDir == "/var/lib/stacks" && c.region == "eu-west-1" && c.baseDomain == "s3.local")
        #expect(c.s3Listen == ListenAddress("127.0.0.1:9000") && c.gossipListen == ListenAddress("127.0.0.2:7946"))
        #expect(c.seeds == ["127.0.0.1:7946", "127.0.0.3:7946"] && c.adminListen == ListenAddress("127.0.0.1:9101"))
        #expect(c.tags == ["zone": "a", "hypervisor": "kvm"])
        #expect(c.gossipKey != nil)
    }

    /// TOMLKit reads all of TOML: dotted keys, inline tables, comments after values.
    @Test func dottedKeysAndInlineTablesParse() throws {
        let c = try NodeConfig(toml: "node.data_dir = \"/d\"  # comment\ntags = { zone = \"a\", rack = \"r1\" }\n[raft]\nvoters = 5", file: "n.toml")
        #expect(c.dataDir == "/d" && c.tags == ["zone": "a", "rack": "r1"] && c.voters == 5)
    }

    @Test func adminOffLoopbackOnlyWhenAllowed() throws {
        let remote = try NodeConfig(toml: "[node]\ndata_dir = \"/d\"\n[admin]\nlisten = \"10.1.2.3:9001\"\nallow_remote = true", file: "n.toml")
        #expect(remote.adminListen == ListenAddress("10.1.2.3:9001"))
        for host in ["127.0.0.1", "127.9.8.7", "localhost", "[::1]"] {
            #expect(try NodeConfig(toml: "[node]\ndata_dir = \"/d\"\n[admin]\nlisten = \"\(host):9001\"", file: "n.toml").adminListen.isLoopback)
        }
        for host in ["0.0.0.0", "128.0.0.1", "127.0.0.1.evil", "[::]"] { #expect(ListenAddress("\(host):9001")?.isLoopback == false) }
    }

    @Test(arguments: [
        ("[node]\ndata_dir = \"/d\"\nlisten = \"x\"", "n.toml:3: node.listen is not a known setting"),
        ("[node]\ndata_dir = 5", "n.toml:2: node.data_dir must be a string"),
        ("[node]\nname = \"a\"", "n.toml: node.data_dir is required"),
        ("[node]\ndata_dir = \"/d\"\n[s3]\nlisten = \"nowhere\"", "n.toml:4: s3.listen must be host:port"),
        ("[node\ndata_dir = \"/d\"", "n.toml:1: Error while parsing table header: expected ']'"),
        ("[node]\ndata_dir = \"/d\"\ndata_dir = \"/e\"", "n.toml:3: Error while parsing key-value pair: cannot redefine existing string 'data_dir'"),
        ("[node]\ndata_dir = \"/d", "n.toml:2: Error while parsing string"),
        ("[node]\ndata_dir = \"/d\"\n[gossip]\nseeds = [\"nohost\"]", "n.toml:4: gossip.seeds must be an array"),
        ("[node]\ndata_dir = \"/d\"\n[gossip]\nkey = \"short\"", "n.toml:4: gossip.key must be base64 of 32 bytes"),
        ("[node]\ndata_dir = \"/d\"\n[tags]\nzone = 3", "n.toml:4: tags.zone must be a string"),
        ("[node]\ndata_dir = \"/d\"\n[raft]\nvoters = 4", "n.toml:4: raft.voters must be an integer 1, 3, 5 or 7"),
        ("[node]\ndata_dir = \"/d\"\n[raft]\nvoters = 3.0", "n.toml:4: raft.voters must be an integer"),
        ("node.data_dir = \"/d\"\nraft.voters = \"three\"", "n.toml:2: raft.voters must be an integer"),
        ("[node]\ndata_dir = \"/d\"\n[raft]\nbootstrap = \"yes\"", "n.toml:4: raft.bootstrap must be true or false"),
        ("[node]\ndata_dir = \"/d\"\n[raft]\nlisten = \"7100\"", "n.toml:4: raft.listen must be host:port"),
        ("[node]\ndata_dir = \"/d\"\n[admin]\nlisten = \"0.0.0.0:9001\"", "n.toml:4: admin.listen is 0.0.0.0:9001, not a loopback address"),
        ("[node]\ndata_dir = \"/d\"\n[admin]\nlisten = \"10.1.2.3:9001\"\nallow_remote = \"yes\"", "n.toml:5: admin.allow_remote must be true or false"),
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
        for name in ["single-node.toml", "three-node-1.toml", "three-node-2.toml", "three-node-3.toml"] {
            let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
            let text = try String(contentsOfFile: "/\(path)/cluster-configs/\(name)", encoding: .utf8)
            _ = try NodeConfig(toml: text, file: name)
        }
    }
}
