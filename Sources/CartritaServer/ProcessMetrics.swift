import Foundation
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: - The process's own figures, under the standard names

/// What /proc says about this process, read at scrape time: the figures every Prometheus client
/// library exports under these names (`process_resident_memory_bytes`, …), so stock dashboards
/// and `cartrita load` find them, plus RSS split into anonymous memory and mapped files (the
/// log's pages, which the log writer keeps bounded: `EventLogConfiguration.releaseMappedPagesEveryBytes`).
public struct ProcessSample: Equatable, Sendable {
    public var residentBytes: Double
    public var residentAnonymousBytes: Double
    public var residentFileBytes: Double
    public var virtualBytes: Double
    public var cpuSeconds: Double
    public var threads: Double
    public var openFileDescriptors: Double
    public var startTimeSeconds: Double

    /// This process (`self`) or another one by pid (`bench serve` samples its child). nil where
    /// there is no /proc or the process is gone (the metrics are then absent, not zero).
    public static func read(process: String = "self") -> ProcessSample? {
        let proc = "/proc/\(process)"
        guard let status = Self.text(proc + "/status"), let stat = Self.text(proc + "/stat") else { return nil }
        func kibibytes(_ field: String) -> Double? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            // "VmRSS:\t  1234 kB", "Threads:\t12": a tab, then maybe spaces.
            return line.split { $0 == " " || $0 == "\t" }.dropFirst().first.flatMap { Double($0) }.map { $0 * 1024 }
        }
        func count(_ field: String) -> Double? { kibibytes(field).map { $0 / 1024 } }
        // /proc/PID/stat: "PID (COMM) STATE ..." where COMM may hold spaces: fields after ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // After the name: state is field 3, so field N is at index N - 3.
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 19, ticks > 0, let user = Double(fields[11]), let system = Double(fields[12]), let started = Double(fields[19])
        else { return nil }
        let bootSeconds = Self.text("/proc/stat")?.split(separator: "\n").first { $0.hasPrefix("btime ") }
            .flatMap { Double($0.dropFirst(6).trimmingCharacters(in: .whitespaces)) } ?? 0
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: proc + "/fd").count).map(Double.init) ?? 0
        return ProcessSample(
            residentBytes: kibibytes("VmRSS") ?? 0, residentAnonymousBytes: kibibytes("RssAnon") ?? 0,
            residentFileBytes: kibibytes("RssFile") ?? 0, virtualBytes: kibibytes("VmSize") ?? 0,
            cpuSeconds: (user + system) / ticks, threads: count("Threads") ?? 0, openFileDescriptors: descriptors,
            startTimeSeconds: bootSeconds + started / ticks)
    }

    /// A /proc file's text (they report size 0, so read until the end, not by size).
    static func text(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let read = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if read <= 0 { break }
            bytes += chunk[0..<read]
            if bytes.count > 1 << 20 { break }  // /proc files here are a few KiB
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Publishes a `ProcessSample` at each scrape. CPU time is a counter (it only grows), moved
/// by the difference since the last scrape.
final class ProcessMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let cpuSecondsCounted = Mutex<Double>(0)

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func update() {
        guard let sample = ProcessSample.read() else { return }
        let gauges: [(String, String, Double)] = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", sample.residentBytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", sample.virtualBytes),
            ("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds", sample.startTimeSeconds),
            ("process_open_fds", "Number of open file descriptors", sample.openFileDescriptors),
            ("process_threads", "Number of OS threads", sample.threads),
            ("cartrita_process_resident_anonymous_bytes", "Resident anonymous memory (heap, stacks) in bytes", sample.residentAnonymousBytes),
            ("cartrita_process_resident_file_bytes", "Resident pages of mapped files (the binary, libraries, the log's map) in bytes", sample.residentFileBytes),
        ]
        for (name, help, value) in gauges {
            self.registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: []).set(value)
        }
        let delta = self.cpuSecondsCounted.withLock { counted -> Double in
            let delta = max(0, sample.cpuSeconds - counted)
            counted = max(counted, sample.cpuSeconds)
            return delta
        }
        self.registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "process_cpu_seconds", unitName: "total", helpText: "Total user and system CPU time spent in seconds"),
            labels: []
        ).increment(by: delta)
    }
}
