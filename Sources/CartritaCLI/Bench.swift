import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import CartritaLog
import Foundation

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print machine-readable figures.",
        subcommands: [BenchLog.self, BenchRuntime.self, BenchSim.self, BenchTravel.self, BenchServe.self]
    )
}

/// `cartrita bench log --json`: appends per second by durability mode and producer count, codec
/// costs, scan speed and bytes per record, with a raw-LMDB baseline measured in the same run so
/// that ratios, not absolute numbers, carry the verdict on a noisy 2-core machine.
struct BenchLog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "Benchmark the event log.")

    @Option(help: "Keep the large log written for the scan figure in this folder (it must not exist yet).") var data: String?
    @Option(help: "Records in the large log used for the scan and bytes-per-record figures.") var records: Int = 1_000_000
    @Option(help: "Seconds each append configuration runs.") var seconds: Double = 2
    @Option(help: "Bytes of input data in each envelope's payload.") var payloadBytes: Int = 512
    @Option(help: "Append configurations to run, as MODE:PRODUCERS,... (default: the issue's set).")
    var configs: String = "durable:1,durable:64,durable:1024,relaxed:1024,fast:1024"
    @Option(help: "Group-commit linger of the appending logs, in microseconds (0: none).")
    var lingerMicroseconds: Int = EventLogConfiguration().groupCommitLingerMicroseconds
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        let scratch = NSTemporaryDirectory() + "cartrita-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var traffic = SampleTraffic(seed: 42, payloadBytes: self.payloadBytes)
        let template = traffic.request()

        // Codec costs, single thread.
        let encodeNs = Self.encodeNanoseconds(template)
        let decodeNs = Self.decodeNanoseconds(template)

        let sampleRecord = Self.recordBytes(template)

        var appends: [(String, [(String, JSON)])] = []
        var writers: [(String, JSON)] = []
        var writerMetrics: [String: WriterMetrics] = [:]
        for config in self.configs.split(separator: ",") {
            let parts = config.split(separator: ":")
            guard parts.count == 2, let mode = Durability(rawValue: String(parts[0])), let producers = Int(parts[1]), producers > 0 else {
                throw ValidationError("bad --configs entry \(config); expected MODE:PRODUCERS")
            }
            let (rate, metrics) = try await Self.appendRate(
                path: scratch + "/\(mode.rawValue)-\(producers)", durability: mode, producers: producers,
                seconds: self.seconds, template: template, lingerMicroseconds: self.lingerMicroseconds)
            if let row = appends.firstIndex(where: { $0.0 == mode.rawValue }) {
                appends[row].1.append((String(producers), .double(rate.rounded())))
            } else {
                appends.append((mode.rawValue, [(String(producers), .double(rate.rounded()))]))
            }
            writers.append((
                "\(mode.rawValue):\(producers)",
                .object([
                    ("avg_batch_records", .double((metrics.averageBatchRecords * 10).rounded() / 10)),
                    ("max_batch_records", .int(Int64(metrics.maxBatchRecords))),
                    ("avg_commit_ms", .double((metrics.averageCommitMilliseconds * 1000).rounded() / 1000)),
                    ("max_commit_ms", .double((Double(metrics.maxCommitNanoseconds) / 1e3).rounded() / 1e3)),
                ])
            ))
            writerMetrics["\(mode.rawValue):\(producers)"] = metrics
            if !self.json { print("appends/s \(mode.rawValue) \(producers) producers: \(Int(rate))") }
        }

        // Raw LMDB, durable, the same record bytes, no encoding, hashing or indexes: once with
        // 1024 records per commit, once with the batch size the log itself reached with 1024
        // producers ("the same batching"): each producer waits for its own acknowledgement, so
        // they split into two groups that alternate between committing and gathering.
        let raw = try Self.rawLMDB(path: scratch + "/raw", recordBytes: sampleRecord, batchRecords: 1024, seconds: self.seconds)
        let logBatch = writerMetrics["durable:1024"].map { Int($0.averageBatchRecords.rounded()) } ?? 1024
        let rawSameBatching = try Self.rawLMDB(
            path: scratch + "/raw-same", recordBytes: sampleRecord, batchRecords: max(logBatch, 1), seconds: self.seconds)

        // A large log for scanning, written with 1024 producers in fast mode then synced.
        let bigPath = self.data ?? (scratch + "/big")
        let written = try await Self.fill(path: bigPath, records: self.records, template: template)
        let scan = try Self.scan(path: bigPath)
        let fileBytes = EventLog.dataFileBytes(in: bigPath)

        let durable1024 = Self.number(appends, "durable", "1024")
        let appendsJSON: JSON = .object(appends.map { row in (row.0, JSON.object(row.1)) })
        let bytesPerRecord = (Double(fileBytes) / Double(max(written, 1))).rounded()
        let ratio = (raw / max(durable1024, 1) * 100).rounded() / 100
        let ratioSameBatching = (rawSameBatching / max(durable1024, 1) * 100).rounded() / 100
        let result: JSON = .object([
            ("appends_per_s", appendsJSON),
            ("encode_ns", .double(encodeNs.rounded())),
            ("decode_ns", .double(decodeNs.rounded())),
            ("scan_records_per_s", .double(scan.rounded())),
            ("bytes_per_record", .double(bytesPerRecord)),
            ("record_bytes", .int(Int64(sampleRecord.count))),
            ("payload_bytes", .int(Int64(self.payloadBytes))),
            ("raw_lmdb_appends_per_s", .double(raw.rounded())),
            ("durable_1024_vs_raw_ratio", .double(ratio)),
            ("raw_lmdb_same_batching_appends_per_s", .double(rawSameBatching.rounded())),
            ("raw_same_batching_records_per_commit", .int(Int64(logBatch))),
            ("durable_1024_vs_raw_same_batching_ratio", .double(ratioSameBatching)),
            ("scan_log_records", .int(Int64(written))),
            ("writer", .object(writers)),
            ("seconds_per_config", .double(self.seconds)),
            ("group_commit_linger_us", .int(Int64(self.lingerMicroseconds))),
        ])
        if self.json {
            printJSON(result)
        } else {
            print(result.rendered())
        }
    }

    static func number(_ table: [(String, [(String, JSON)])], _ mode: String, _ count: String) -> Double {
        guard let row = table.first(where: { $0.0 == mode }), let cell = row.1.first(where: { $0.0 == count }),
            case .double(let value) = cell.1
        else { return 0 }
        return value
    }

    static func recordBytes(_ envelope: Envelope) -> [UInt8] {
        let body = try! EnvelopeEncoder().encodeBody(envelope)
        let writer = MsgPackWriter()
        writer.writeRecord(header: RecordHeader(seq: 1, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 0, entropy: 0), envelope: body)
        return writer.bytes
    }

    static func encodeNanoseconds(_ envelope: Envelope) -> Double {
        let encoder = EnvelopeEncoder()
        let iterations = 200_000
        var total = 0
        let start = ContinuousClock.now
        for _ in 0..<iterations { total &+= (try? encoder.encode(envelope).count) ?? 0 }
        precondition(total > 0)
        return (ContinuousClock.now - start).seconds * 1e9 / Double(iterations)
    }

    static func decodeNanoseconds(_ envelope: Envelope) -> Double {
        let bytes = Self.recordBytes(envelope)
        let decoder = EnvelopeDecoder()
        let iterations = 200_000
        var total: UInt64 = 0
        let start = ContinuousClock.now
        bytes.withUnsafeBytes { raw in
            for _ in 0..<iterations { total &+= (try? decoder.decodeRecord(raw).header.seq) ?? 0 }
        }
        precondition(total > 0)
        return (ContinuousClock.now - start).seconds * 1e9 / Double(iterations)
    }

    /// Raw LMDB, durable, `batchRecords` records per commit with MDB_APPEND: the ceiling for the log.
    static func rawLMDB(path: String, recordBytes: [UInt8], batchRecords: Int, seconds: Double) throws -> Double {
        // Address space only: without MDB_WRITEMAP LMDB does not preallocate the file.
        let environment = try LMDBEnvironment(path: path, configuration: .init(mapSizeBytes: 1 << 36))
        defer { try? environment.close() }
        let database = try environment.openDatabase(name: "raw")
        var seq: UInt64 = 0
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            try environment.write { txn in
                for _ in 0..<batchRecords {
                    seq += 1
                    try txn.put(database, key: LMDBBigEndianKey(seq), value: recordBytes, flags: .append)
                }
            }
        }
        return Double(seq) / (ContinuousClock.now - start).seconds
    }

    /// Fresh ids for every append (the log refuses duplicates), from each producer's own generator.
    static func appendRate(
        path: String, durability: Durability, producers: Int, seconds: Double, template: Envelope, lingerMicroseconds: Int
    ) async throws -> (Double, WriterMetrics) {
        let log = try EventLog(
            path: path, configuration: EventLogConfiguration(durability: durability, groupCommitLingerMicroseconds: lingerMicroseconds))
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let count = try await Self.produce(log: log, producers: producers, template: template) { _ in ContinuousClock.now < deadline }
        let elapsed = (ContinuousClock.now - start).seconds
        let metrics = log.writerMetrics
        log.close()
        try? FileManager.default.removeItem(atPath: path)
        return (Double(count) / elapsed, metrics)
    }

    static func fill(path: String, records: Int, template: Envelope) async throws -> Int {
        let log = try EventLog(path: path, configuration: EventLogConfiguration(durability: .fast))
        let budget = Counter(records)
        let count = try await Self.produce(log: log, producers: 1024, template: template) { _ in budget.take() }
        try await log.flush()
        log.close()
        return count
    }

    static func produce(
        log: EventLog, producers: Int, template: Envelope, _ more: @escaping @Sendable (Int) -> Bool
    ) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var entropy = SplitMix64(seed: UInt64(producer) &* 0x9E37_79B9)
                    var ids = UUIDv7Generator()
                    var envelope = template
                    var done = 0
                    while more(done) {
                        // Ids from the wall clock, as the runtime makes them: time-ordered, so the
                        // id index grows at its right edge like it does in production.
                        let now = Int64(Date().timeIntervalSince1970 * 1000)
                        envelope.id = ids.next(milliseconds: now, entropy: &entropy)
                        envelope.timestampMilliseconds = now
                        _ = try await log.append(envelope, clockMilliseconds: envelope.timestampMilliseconds, entropy: entropy.next64())
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
    }

    /// Decoded records per second over the whole log, one reader.
    static func scan(path: String) throws -> Double {
        let log = try EventLog(path: path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        let decoder = EnvelopeDecoder()
        var decoded = 0
        let start = ContinuousClock.now
        try log.scanRaw { _, bytes in
            _ = try decoder.decodeRecord(bytes)
            decoded += 1
            return true
        }
        return Double(decoded) / (ContinuousClock.now - start).seconds
    }
}

/// A shared countdown for producers.
final class Counter: @unchecked Sendable {
    let lock = NSLock()
    var remaining: Int
    init(_ count: Int) { self.remaining = count }

    func take() -> Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard self.remaining > 0 else { return false }
        self.remaining -= 1
        return true
    }
}
