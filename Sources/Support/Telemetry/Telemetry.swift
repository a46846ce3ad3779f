@_exported import CoreMetrics
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One family of series: its Prometheus name (`stacks_` prefix, unit last), its help text, and
/// for a histogram its bucket bounds (seconds for timers, the recorded unit otherwise). Each
/// shell declares its own next to the code that records them.
public struct Series: Sendable {
    public let name: String
    public let help: String
    public let buckets: [Double]
    public init(_ name: String, _ help: String, buckets: [Double] = []) {
        self.name = name; self.help = help; self.buckets = buckets
    }
}

/// Where a shell's measurements go: swift-metrics handles made by one factory. The node's is a
/// `MetricsExporter`; `Metrics.disabled` (the default of every shell) records nothing.
public struct Metrics: Sendable {
    let factory: any MetricsFactory
    let exporter: MetricsExporter?

    public static let disabled = Metrics(factory: NOOPMetricsHandler.instance, exporter: nil)

    public func counter(_ s: Series, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
        exporter?.declare(s)
        return CoreMetrics.Counter(label: s.name, dimensions: dimensions, factory: factory)
    }

    public func gauge(_ s: Series, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
        exporter?.declare(s)
        return CoreMetrics.Gauge(label: s.name, dimensions: dimensions, factory: factory)
    }

    /// A histogram of durations (`Timer`), exported in seconds.
    public func timer(_ s: Series, _ dimensions: [(String, String)] = []) -> CoreMetrics.Timer {
        exporter?.declare(s)
        return CoreMetrics.Timer(label: s.name, dimensions: dimensions, factory: factory)
    }

    /// A histogram of values (an aggregating `Recorder`), e.g. sizes in bytes.
    public func histogram(_ s: Series, _ dimensions: [(String, String)] = []) -> CoreMetrics.Recorder {
        exporter?.declare(s)
        return CoreMetrics.Recorder(label: s.name, dimensions: dimensions, aggregate: true, factory: factory)
    }

    /// Runs `sample` before every scrape: for gauges read from state owned elsewhere (a
    /// service's event loop), so nothing is recomputed between scrapes.
    public func beforeScrape(_ sample: @escaping @Sendable () async -> Void) {
        exporter?.samplers.withLock { $0.append(sample) }
    }
}

/// The node's metrics: a swift-metrics factory over a Prometheus registry (swift-prometheus)
/// that adds each series' help text and buckets, and the text exposition for `GET /metrics`.
/// One per node, not the process-global `MetricsSystem`, so that several nodes in one test
/// process keep their series apart.
public final class MetricsExporter: MetricsFactory, Sendable {
    let registry = PrometheusCollectorRegistry()
    let declared = Mutex<[String: Series]>([:])
    let samplers = Mutex<[@Sendable () async -> Void]>([])

    public init() {
        metrics.beforeScrape { [rss = metrics.gauge(Self.residentMemory), fds = metrics.gauge(Self.openFiles)] in
            let sample = ProcessSample.read()
            rss.record(sample.residentBytes)
            fds.record(sample.openFiles)
        }
    }

    public var metrics: Metrics { Metrics(factory: self, exporter: self) }

    /// Prometheus text format (version 0.0.4), after running the samplers.
    public func exposition() async -> String {
        for sample in samplers.withLock({ $0 }) { await sample() }
        return registry.emitToString()
    }

    static let residentMemory = Series("stacks_process_resident_memory_bytes", "Resident set size of the stacks process.")
    static let openFiles = Series("stacks_process_open_fds", "File descriptors the stacks process holds open.")

    func declare(_ s: Series) { declared.withLock { $0[s.name] = s } }
    func series(_ label: String) -> Series { declared.withLock { $0[label] } ?? Series(label, "") }
    func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: series(label).help)
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }
    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }
    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: series(label).buckets)
    }
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            descriptor: descriptor(label), labels: dimensions,
            buckets: series(label).buckets.map { .nanoseconds(Int64($0 * 1e9)) })
    }
    // Series live as long as the node: nothing is unregistered.
    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}

/// The process's resident memory and open descriptors, from /proc (zero where there is none).
public struct ProcessSample: Sendable {
    public var residentBytes: Int64
    public var openFiles: Int64

    public static func read() -> ProcessSample {
        var sample = ProcessSample(residentBytes: 0, openFiles: 0)
        #if os(Linux)
        // statm: size resident shared … in pages.
        let fd = open("/proc/self/statm", O_RDONLY)
        if fd >= 0 {
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            close(fd)
            let fields = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).split(separator: " ") : []
            if fields.count > 1, let pages = Int64(fields[1]) { sample.residentBytes = pages * Int64(sysconf(Int32(_SC_PAGESIZE))) }
        }
        if let dir = opendir("/proc/self/fd") {
            var n: Int64 = 0
            while let e = readdir(dir) {
                let first = withUnsafeBytes(of: e.pointee.d_name) { $0[0] }
                if first != UInt8(ascii: ".") { n += 1 }
            }
            closedir(dir)
            sample.openFiles = n - 1  // the directory stream itself
        }
        #endif
        return sample
    }
}
