import Testing

@testable import Compute

/// libvirt's test driver keeps `test:///default` state per process: these tests run serially.
@Suite(.serialized) struct HypervisorTests {
    static func domainXML(_ name: String) -> String {
        """
        <domain type='test'>
          <name>\(name)</name>
          <memory unit='MiB'>128</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
        </domain>
        """
    }

    @Test func defineStartDestroyUndefine() throws {
        let hv = try Hypervisor(uri: "test:///default")
        let name = try hv.define(xml: Self.domainXML("stacks-test-vm"))
        #expect(name == "stacks-test-vm")
        #expect(try hv.state(name) == .shutOff)
        try hv.start(name)
        #expect(try hv.state(name) == .running)
        try hv.destroy(name)
        #expect(try hv.state(name) == .shutOff)
        try hv.undefine(name)
        #expect(throws: ComputeError.self) { try hv.state(name) }
    }

    @Test func failuresCarryLibvirtsMessage() throws {
        let hv = try Hypervisor(uri: "test:///default")
        #expect(throws: ComputeError.self) { try hv.start("no-such-domain") }
        #expect(throws: ComputeError.self) { try hv.define(xml: "<domain><broken") }
        do { try hv.start("no-such-domain"); Issue.record("expected failure") } catch {
            #expect(error.description.contains("no-such-domain"))
        }
        #expect(throws: ComputeError.self) { try Hypervisor(uri: "nonsense:///nowhere") }
    }
}
