import CLibvirt

/// Failures talking to a hypervisor through libvirt, with libvirt's own message.
public enum ComputeError: Error, CustomStringConvertible, Equatable {
    case libvirt(operation: String, target: String, message: String)

    public var description: String {
        switch self {
        case .libvirt(let op, let target, let message): "libvirt \(op) \(target): \(message)"
        }
    }
}

/// Power state of a domain, as libvirt reports it.
public enum DomainState: Sendable, Equatable {
    case running, blocked, paused, shuttingDown, shutOff, crashed, suspended, unknown
}

/// The one door to libvirt: a connection to a hypervisor (`qemu:///system`, or the in-process
/// `test:///default` driver in tests). Calls block; run them off event loops.
/// libvirt's last error is thread-local, so each failure is read right after the failing call.
public final class Hypervisor: @unchecked Sendable {
    private let connection: OpaquePointer
    public let uri: String

    public init(uri: String) throws(ComputeError) {
        Self.silenceDefaultErrorPrinter
        guard let c = virConnectOpen(uri) else { throw Self.lastError("open", uri) }
        connection = c
        self.uri = uri
    }

    deinit { virConnectClose(connection) }

    /// libvirt prints every error to stderr unless an error function is installed.
    private static let silenceDefaultErrorPrinter: Void = { virSetErrorFunc(nil) { _, _ in } }()

    private static func lastError(_ op: String, _ target: String) -> ComputeError {
        let message = virGetLastError().map { String(cString: $0.pointee.message) } ?? "unknown error"
        return .libvirt(operation: op, target: target, message: message)
    }

    private func withDomain<T>(_ name: String, _ op: String, _ body: (OpaquePointer) -> T) throws(ComputeError) -> T {
        guard let d = virDomainLookupByName(connection, name) else { throw Self.lastError(op, name) }
        defer { virDomainFree(d) }
        return body(d)
    }

    /// Defines (persists) a domain from its XML description; returns its name.
    @discardableResult
    public func define(xml: String) throws(ComputeError) -> String {
        guard let d = virDomainDefineXML(connection, xml) else { throw Self.lastError("define", "domain XML") }
        defer { virDomainFree(d) }
        return virDomainGetName(d).map { String(cString: $0) } ?? ""
    }

    public func start(_ name: String) throws(ComputeError) {
        let rc = try withDomain(name, "start") { virDomainCreate($0) }
        guard rc == 0 else { throw Self.lastError("start", name) }
    }

    public func destroy(_ name: String) throws(ComputeError) {
        let rc = try withDomain(name, "destroy") { virDomainDestroy($0) }
        guard rc == 0 else { throw Self.lastError("destroy", name) }
    }

    public func undefine(_ name: String) throws(ComputeError) {
        let rc = try withDomain(name, "undefine") { virDomainUndefine($0) }
        guard rc == 0 else { throw Self.lastError("undefine", name) }
    }

    public func state(_ name: String) throws(ComputeError) -> DomainState {
        var state: Int32 = 0, reason: Int32 = 0
        let rc = try withDomain(name, "state") { virDomainGetState($0, &state, &reason, 0) }
        guard rc == 0 else { throw Self.lastError("state", name) }
        switch UInt32(state) {
        case VIR_DOMAIN_RUNNING.rawValue: return .running
        case VIR_DOMAIN_BLOCKED.rawValue: return .blocked
        case VIR_DOMAIN_PAUSED.rawValue: return .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: return .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue: return .shutOff
        case VIR_DOMAIN_CRASHED.rawValue: return .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: return .suspended
        default: return .unknown
        }
    }
}
