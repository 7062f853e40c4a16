import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import CartritaLog
import CartritaTestSupport
import Crypto
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

// Shared helpers of the event log tests. Every test runs against real LMDB in a fresh folder
// under /tmp that is removed afterwards; nothing is mocked.
//
// `CartritaLMDB` and `Crypto` are imported although Package.swift lists only CartritaLog,
// CartritaCodec and CartritaEnvelope for this target: they are CartritaLog's own dependencies,
// so SwiftPM builds and exposes them. The tests use them to tamper with a closed log (raw
// LMDB) and to recompute the hash chain independently of the log's code.

// MARK: - Temporary folders

/// A fresh directory under /tmp (mkdtemp), removed when released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String = "log") {
        var template = Array("/tmp/cartrita-logtests-\(label)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed: \(errno)")
        self.path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    /// A path inside the folder (not created).
    func sub(_ name: String) -> String { self.path + "/" + name }
}

// MARK: - Data

/// `count` valid envelopes of the seeded sample traffic (MCP-SPEC §1), in causal order.
func sampleEnvelopes(seed: UInt64, count: Int, payloadBytes: Int = 256) -> [Envelope] {
    var traffic = SampleTraffic(seed: seed, payloadBytes: payloadBytes)
    return (0..<count).map { _ in traffic.next() }
}

/// SHA-256 computed here, independently of the log's own hashing.
func sha256(_ bytes: [UInt8]) -> Digest32 {
    Digest32(Array(SHA256.hash(data: bytes)))!
}

/// The clock reading and entropy the tests record with envelope number `index`.
func clockFor(_ index: Int) -> Int64 { 1_764_028_800_000 + Int64(index) * 3 }
func entropyFor(_ index: Int) -> UInt64 { UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 17 }

/// A small configuration shorthand.
func config(
    durability: Durability = .durable, readOnly: Bool = false, _ adjust: (inout EventLogConfiguration) -> Void = { _ in }
) -> EventLogConfiguration {
    var configuration = EventLogConfiguration(durability: durability, readOnly: readOnly)
    adjust(&configuration)
    return configuration
}

/// Appends envelopes one after another; returns their seqs.
func appendAll(_ log: EventLog, _ envelopes: [Envelope], firstIndex: Int = 0) async throws -> [UInt64] {
    var seqs: [UInt64] = []
    seqs.reserveCapacity(envelopes.count)
    for (offset, envelope) in envelopes.enumerated() {
        let index = firstIndex + offset
        seqs.append(try await log.append(envelope, clockMilliseconds: clockFor(index), entropy: entropyFor(index)))
    }
    return seqs
}

// MARK: - Expected errors (the log throws typed `EventLogError`)

@discardableResult
func expectLogError<T>(
    _ code: EventLogError.Code, _ what: String = "", file: StaticString = #filePath, line: UInt = #line,
    _ body: () async throws -> T
) async -> EventLogError? {
    let result: Result<T, any Error>
    do { result = .success(try await body()) } catch { result = .failure(error) }
    return checkLogError(code, what, result, file: file, line: line)
}

@discardableResult
func expectLogErrorSync<T>(
    _ code: EventLogError.Code, _ what: String = "", file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> T
) -> EventLogError? {
    checkLogError(code, what, Result { try body() }, file: file, line: line)
}

/// The assertion both forms share: the body must have failed with an `EventLogError` of `code`.
func checkLogError<T>(
    _ code: EventLogError.Code, _ what: String, _ result: Result<T, any Error>, file: StaticString, line: UInt
) -> EventLogError? {
    switch result {
    case .success(let value):
        XCTFail("\(what): expected \(code), got success \(value)", file: file, line: line)
        return nil
    case .failure(let error as EventLogError):
        XCTAssertEqual(error.code, code, "\(what): \(error)", file: file, line: line)
        return error
    case .failure(let error):
        XCTFail("\(what): expected EventLogError \(code), got \(error)", file: file, line: line)
        return nil
    }
}

/// Asserts `verify()` passes, with the problem in the message when it does not.
@discardableResult
func assertVerifies(_ log: EventLog, records: Int? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> VerifyReport {
    let report = try log.verify()
    XCTAssertTrue(report.passed, "verify failed: \(report.firstProblem.map { "\($0)" } ?? "")", file: file, line: line)
    if let records {
        XCTAssertEqual(report.records, records, "verified record count", file: file, line: line)
    }
    return report
}

// MARK: - Independent index model

/// What the lookups must answer, computed from the appended envelopes and their seqs alone.
struct IndexModel {
    var byCorrelation: [MessageID: [UInt64]] = [:]
    var byActor: [String: [UInt64]] = [:]
    var lastSeq: UInt64 = 0

    mutating func add(_ envelope: Envelope, seq: UInt64) {
        self.byCorrelation[envelope.correlationID, default: []].append(seq)
        self.byActor[envelope.recipient.rawValue, default: []].append(seq)
        self.lastSeq = max(self.lastSeq, seq)
    }

    mutating func add(_ envelopes: [Envelope], seqs: [UInt64]) {
        for (envelope, seq) in zip(envelopes, seqs) { self.add(envelope, seq: seq) }
    }

    /// Checks the lookups of the log against the model: every actor, and up to
    /// `correlations` tasks spread over the log (each lookup may scan the unindexed tail).
    func check(_ log: EventLog, _ label: String, correlations: Int = 40, file: StaticString = #filePath, line: UInt = #line) throws {
        let tasks = self.byCorrelation.sorted { $0.value[0] < $1.value[0] }
        let step = max(1, tasks.count / correlations)
        for (correlation, expected) in stride(from: 0, to: tasks.count, by: step).map({ tasks[$0] }) + [tasks.last].compactMap({ $0 }) {
            XCTAssertEqual(try log.seqs(correlation: correlation), expected.sorted(), "\(label): seqs(correlation: \(correlation))", file: file, line: line)
        }
        let middle = self.lastSeq / 2
        for (actor, expected) in self.byActor {
            let sorted = expected.sorted()
            XCTAssertEqual(try log.seqs(actor: actor), sorted, "\(label): seqs(actor: \(actor))", file: file, line: line)
            XCTAssertEqual(try log.seqs(actor: actor, after: middle), sorted.filter { $0 > middle }, "\(label): seqs(actor: \(actor), after: \(middle))", file: file, line: line)
            XCTAssertEqual(try log.seqs(actor: actor, after: self.lastSeq), [], "\(label): nothing after the end", file: file, line: line)
            // Pages: the first `limit` of the list, across the index and the unindexed tail.
            let later = sorted.filter { $0 > middle }
            for limit in [1, 3, max(1, later.count - 1), later.count + 5] {
                XCTAssertEqual(
                    try log.seqs(actor: actor, after: middle, limit: limit), Array(later.prefix(limit)),
                    "\(label): seqs(actor: \(actor), after: \(middle), limit: \(limit))", file: file, line: line)
            }
            XCTAssertEqual(try log.head(of: actor), sorted.last!, "\(label): head(of: \(actor))", file: file, line: line)
        }
        let heads = try log.heads()
        XCTAssertEqual(heads.map(\.actor), self.byActor.keys.sorted(), "\(label): heads() actors, sorted", file: file, line: line)
        XCTAssertEqual(heads.map(\.seq), self.byActor.keys.sorted().map { self.byActor[$0]!.max()! }, "\(label): heads() seqs", file: file, line: line)
        XCTAssertEqual(try log.head(of: "agent.nobody@v9.9"), 0, file: file, line: line)
        XCTAssertEqual(try log.seqs(actor: "agent.nobody@v9.9"), [], file: file, line: line)
        XCTAssertEqual(try log.seqs(correlation: MessageID(high: 0x0123_4567_89AB_7CDE, low: 0x8000_0000_0000_0001)), [], file: file, line: line)
    }
}

// MARK: - Raw LMDB access to a closed log (tampering, simulated crashes)

/// Opens the closed log folder with LMDB directly and runs `body` in one write transaction.
/// `open(name)` gives a named database of the log. The EventLog of that folder must be closed:
/// LMDB forbids opening one environment twice in a process.
@discardableResult
func withRawLog<R>(_ path: String, _ body: (LMDBWriteTransaction, (String) throws -> LMDBDatabase) throws -> R) throws -> R {
    let fileBytes = (try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? NSNumber)?.intValue ?? 0
    let environment = try LMDBEnvironment(
        path: path, configuration: .init(mapSizeBytes: max(64 << 20, fileBytes * 2), maxDatabases: 16, maxReaders: 256))
    defer { try? environment.close() }
    return try environment.write { txn in
        try body(txn) { name in try txn.openDatabase(name: name, flags: []) }
    }
}

func bigEndianBytes(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { [UInt8]($0) } }

/// The key of an actor's entries in `by_actor` and `snapshots`: address ‖ 0x00 ‖ big-endian seq.
func actorKey(_ actor: String, _ seq: UInt64) -> [UInt8] { Array(actor.utf8) + [0] + bigEndianBytes(seq) }

/// All keys of a database, copied out.
func allKeys(_ txn: LMDBReadTransaction, _ database: LMDBDatabase) throws -> [[UInt8]] {
    var keys: [[UInt8]] = []
    _ = try txn.withCursor(database) { cursor in
        try cursor.forEach { key, _ in
            keys.append([UInt8](key))
            return true
        }
    }
    return keys
}

/// The trailing big-endian seq of an index key.
func trailingSeq(_ key: [UInt8]) -> UInt64 {
    key.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
}

// MARK: - The `cartrita` executable

/// The `cartrita` binary built next to the test bundle, or `CARTRITA_BIN` (see `CartritaBinary`).
func cartritaExecutable() -> URL? { CartritaBinary.url() }

struct ProcessOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `cartrita` with `arguments` to the end (both pipes drained at once).
func runCartrita(_ arguments: [String]) throws -> ProcessOutput {
    let outcome = try CartritaBinary.run(arguments)
    return ProcessOutput(status: outcome.status, stdout: outcome.out, stderr: outcome.err)
}

/// A value shared between threads under a lock.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.value
    }
    func set(_ value: Value) {
        self.lock.lock()
        self.value = value
        self.lock.unlock()
    }
    func update<R>(_ body: (inout Value) -> R) -> R {
        self.lock.lock()
        defer { self.lock.unlock() }
        return body(&self.value)
    }
}

/// The package root, from this source file's path (for the golden fixtures in Snapshots/).
func packageRoot(file: String = #filePath) -> URL {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
