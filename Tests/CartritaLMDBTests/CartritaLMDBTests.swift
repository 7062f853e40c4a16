import CLMDB
import Dispatch
import Foundation
import XCTest

@testable import CartritaLMDB

/// A fresh directory under /tmp (mkdtemp), removed after the test.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/cartrita-lmdb-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed: \(errno)")
        self.path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    func sub(_ name: String) -> String { self.path + "/" + name }
}

/// A lock-protected flag/counter shared with background readers (Foundation's NSLock keeps it portable).
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        self.lock.lock()
        defer { self.lock.unlock() }
        return body(&self.value)
    }
}

func value(for key: UInt64, bytes: Int) -> [UInt8] {
    (0..<bytes).map { UInt8(truncatingIfNeeded: key &+ UInt64($0)) }
}

final class CartritaLMDBTests: XCTestCase {
    private func assertLMDBError(_ code: LMDBError.Code, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual((error as? LMDBError)?.code, code, "\(error)", file: file, line: line)
        }
    }

    func testPutGetCommitAbort() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.sub("env/nested"))  // created, parents included
        let db = try env.openDatabase(name: "kv")

        try env.write { txn in
            try txn.put(db, key: [1, 2, 3], value: [42])
            // Borrowed value visible inside the same write transaction.
            XCTAssertEqual(try txn.getBytes(db, key: [1, 2, 3] as [UInt8]), [42])
        }
        XCTAssertEqual(try env.read { try $0.getBytes(db, key: [1, 2, 3] as [UInt8]) }, [42])

        // A throwing closure aborts.
        struct Boom: Error {}
        XCTAssertThrowsError(try env.write { txn in
            try txn.put(db, key: [9], value: [9])
            throw Boom()
        }) { XCTAssertTrue($0 is Boom) }
        XCTAssertNil(try env.read { try $0.get(db, key: [9] as [UInt8]) })

        // Manual abort, and a transaction released without commit is aborted.
        let txn = try env.beginWrite()
        try txn.put(db, key: [7], value: [7])
        txn.abort()
        self.assertLMDBError(.transactionFinished) { _ = try txn.get(db, key: [7] as [UInt8]) }
        self.assertLMDBError(.transactionFinished) { try txn.commit() }
        do {
            let dropped = try env.beginWrite()
            try dropped.put(db, key: [8], value: [8])
        }
        XCTAssertNil(try env.read { try $0.get(db, key: [8] as [UInt8]) })

        // Delete, stat, drop.
        try env.write { txn in
            XCTAssertTrue(try txn.delete(db, key: [1, 2, 3] as [UInt8]))
            XCTAssertFalse(try txn.delete(db, key: [1, 2, 3] as [UInt8]))
            try txn.put(db, key: LMDBBigEndianKey(1), value: [1])
            try txn.put(db, key: LMDBBigEndianKey(2), value: [2])
            XCTAssertEqual(try txn.stat(db).entries, 2)
            try txn.drop(db, delete: false)
            XCTAssertEqual(try txn.stat(db).entries, 0)
        }
        XCTAssertGreaterThan(try env.stat().pageSizeBytes, 0)
        try env.close()
        self.assertLMDBError(.environmentClosed) { _ = try env.read { _ in 0 } }
    }

    func testAppendAcceptsIncreasingKeysAndRejectsOutOfOrder() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path)
        let db = try env.openDatabase(name: "log")
        try env.write { txn in
            for seq: UInt64 in [1, 2, 10, 300, 1 << 40] {
                XCTAssertTrue(try txn.put(db, key: LMDBBigEndianKey(seq), value: [1], flags: .append).wasStored)
            }
        }
        self.assertLMDBError(.keyExist) {
            try env.write { txn in _ = try txn.put(db, key: LMDBBigEndianKey(5), value: [1], flags: .append) }
        }
        // Even with .noOverwrite, an APPEND failure is an error, not a dedup result.
        XCTAssertThrowsError(try env.write { txn in
            try txn.put(db, key: LMDBBigEndianKey(1 << 40), value: [1], flags: [.append, .noOverwrite])
        }) { XCTAssertTrue(($0 as? LMDBError)?.isKeyExist ?? false) }
        XCTAssertEqual(try env.read { try $0.stat(db).entries }, 5)
    }

    func testNoOverwriteReportsExistingValue() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path)
        let db = try env.openDatabase(name: "dedup")
        try env.write { txn in
            XCTAssertTrue(try txn.put(db, key: [5], value: [1, 1], flags: .noOverwrite).wasStored)
            let second = try txn.put(db, key: [5], value: [2, 2], flags: .noOverwrite)
            guard case .keyExists(let existing) = second else { return XCTFail("expected keyExists") }
            XCTAssertEqual([UInt8](existing), [1, 1])
        }
        XCTAssertEqual(try env.read { try $0.getBytes(db, key: [5] as [UInt8]) }, [1, 1])
    }

    func testReserveWritesInPlace() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path)
        let db = try env.openDatabase(name: "reserve")
        try env.write { txn in
            try txn.put(db, key: LMDBBigEndianKey(1), reservingBytes: 16) { buffer in
                XCTAssertEqual(buffer.count, 16)
                withBigEndianKey(0xDEAD_BEEF) { buffer.copyMemory(from: $0) }
                withBigEndianKey(7) { UnsafeMutableRawBufferPointer(rebasing: buffer[8...]).copyMemory(from: $0) }
            }
        }
        try env.read { txn in
            let value = try XCTUnwrap(try txn.get(db, key: LMDBBigEndianKey(1)))
            XCTAssertEqual(value.bigEndianUInt64(), 0xDEAD_BEEF)
            XCTAssertEqual(value.bigEndianUInt64(atByteOffset: 8), 7)
            XCTAssertNil(value.bigEndianUInt64(atByteOffset: 9))  // short data: nil, no trap
        }
    }

    func testCursorIteratesBigEndianKeysInNumericOrder() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path)
        let db = try env.openDatabase(name: "ordered")
        let keys: [UInt64] = [300, 1, 256, 65_536, 2, 1 << 63, 255, 0]
        try env.write { txn in
            for key in keys { try txn.put(db, key: LMDBBigEndianKey(key), value: LMDBBigEndianKey(key &* 2)) }
        }
        try env.read { txn in
            try txn.withCursor(db) { cursor in
                var seen: [UInt64] = []
                let visited = try cursor.forEach { key, value in
                    XCTAssertEqual(value.bigEndianUInt64(), key.bigEndianUInt64()! &* 2)
                    seen.append(key.bigEndianUInt64()!)
                    return true
                }
                XCTAssertEqual(seen, keys.sorted())
                XCTAssertEqual(visited, keys.count)

                seen = []
                try cursor.forEach(from: LMDBBigEndianKey(257)) { key, _ in
                    seen.append(key.bigEndianUInt64()!)
                    return seen.count < 2
                }
                XCTAssertEqual(seen, [300, 65_536])

                XCTAssertEqual(try cursor.last()?.key.bigEndianUInt64(), 1 << 63)
                XCTAssertEqual(try cursor.prev()?.key.bigEndianUInt64(), 65_536)
                XCTAssertEqual(try cursor.first()?.key.bigEndianUInt64(), 0)
                XCTAssertEqual(try cursor.next()?.key.bigEndianUInt64(), 1)
                XCTAssertEqual(try cursor.set(key: LMDBBigEndianKey(255))?.key.bigEndianUInt64(), 255)
                XCTAssertNil(try cursor.set(key: LMDBBigEndianKey(254)))
                XCTAssertEqual(try cursor.setRange(key: LMDBBigEndianKey(254))?.key.bigEndianUInt64(), 255)
                XCTAssertNil(try cursor.setRange(key: LMDBBigEndianKey(UInt64.max)))
            }
        }
        // A cursor that outlives its transaction fails cleanly.
        let escaped = try env.read { try $0.cursor(db) }
        self.assertLMDBError(.transactionFinished) { _ = try escaped.first() }

        // dupSort count.
        let dups = try env.openDatabase(name: "dups", flags: .dupSort)
        try env.write { txn in
            for v: UInt8 in [3, 1, 2] { try txn.put(dups, key: [1], value: [v]) }
            try txn.withCursor(dups) { cursor in
                XCTAssertNotNil(try cursor.set(key: [1] as [UInt8]))
                XCTAssertEqual(try cursor.count(), 3)
            }
        }
    }

    func testMapFullThenGrowAndRetryLosesNothing() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, configuration: .init(mapSizeBytes: 64 << 10))
        let db = try env.openDatabase(name: "events")
        var committed: UInt64 = 0
        var mapFull: LMDBError?
        while mapFull == nil {
            do {
                try env.write { txn in
                    try txn.put(db, key: LMDBBigEndianKey(committed), value: value(for: committed, bytes: 256),
                                flags: .append)
                }
                committed += 1
            } catch let error as LMDBError {
                mapFull = error
            }
            XCTAssertLessThan(committed, 1000, "map never filled")
        }
        let error = try XCTUnwrap(mapFull)
        XCTAssertEqual(error.code, .mapFull)
        XCTAssertTrue(error.isMapFull)
        XCTAssertEqual(error.returnCode, MDB_MAP_FULL)
        XCTAssertTrue(["mdb_put", "mdb_txn_commit"].contains(error.operation), error.operation)
        XCTAssertGreaterThan(committed, 5)

        let before = try env.mapSizeBytes
        let after = try env.growMap(byBytes: 1 << 20)
        XCTAssertEqual(try env.mapSizeBytes, after)
        XCTAssertGreaterThanOrEqual(after, before + (1 << 20))
        try env.setMapSize(4 << 20)
        XCTAssertGreaterThanOrEqual(try env.info().mapSizeBytes, 4 << 20)

        try env.write { txn in
            try txn.put(db, key: LMDBBigEndianKey(committed), value: value(for: committed, bytes: 256), flags: .append)
        }
        try env.read { txn in
            XCTAssertEqual(try txn.stat(db).entries, Int(committed) + 1)
            for key in 0...committed {
                XCTAssertEqual(try txn.getBytes(db, key: LMDBBigEndianKey(key)), value(for: key, bytes: 256))
            }
        }
    }

    func testGrowingFromInsideATransactionThrowsInsteadOfDeadlocking() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path)
        self.assertLMDBError(.transactionActiveOnThisThread) {
            try env.read { _ in try env.setMapSize(128 << 20) }
        }
        self.assertLMDBError(.transactionActiveOnThisThread) {
            try env.write { _ in _ = try env.growMap(byBytes: 1 << 20) }
        }
    }

    func testConcurrentReadersWhileMapGrows() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, configuration: .init(mapSizeBytes: 64 << 10))
        let db = try env.openDatabase(name: "events")
        let meta = try env.openDatabase(name: "meta")
        let countKey: [UInt8] = Array("count".utf8)
        try env.write { txn in try txn.put(meta, key: countKey, value: LMDBBigEndianKey(0)) }

        let stop = Shared(false)
        let readsDone = Shared(0)
        let failures = Shared<[String]>([])
        let group = DispatchGroup()
        for _ in 0..<4 {
            DispatchQueue.global().async(group: group) {
                while !stop.withLock({ $0 }) {
                    do {
                        try env.read { txn in
                            // Every key below the committed count must be present and intact.
                            let count = try txn.get(meta, key: countKey)!.bigEndianUInt64()!
                            for key in stride(from: 0, to: count, by: max(1, Int(count) / 50)) {
                                let got = try txn.getBytes(db, key: LMDBBigEndianKey(UInt64(key)))
                                if got != value(for: UInt64(key), bytes: 700) {
                                    failures.withLock { $0.append("key \(key) of \(count) wrong") }
                                }
                            }
                        }
                        readsDone.withLock { $0 += 1 }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
        }

        // This thread is the writer: batches of appends; on MDB_MAP_FULL grow and retry the batch.
        var next: UInt64 = 0
        var grows = 0
        while next < 1500 {
            do {
                try env.write { txn in
                    for key in next..<(next + 25) {
                        try txn.put(db, key: LMDBBigEndianKey(key), value: value(for: key, bytes: 700), flags: .append)
                    }
                    try txn.put(meta, key: countKey, value: LMDBBigEndianKey(next + 25))
                }
                next += 25
            } catch let error as LMDBError where error.isMapFull {
                try env.growMap(byBytes: 128 << 10)
                grows += 1
            }
        }
        stop.withLock { $0 = true }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertGreaterThan(grows, 3)
        XCTAssertGreaterThan(readsDone.withLock { $0 }, 0)
        XCTAssertEqual(try env.read { try $0.stat(db).entries }, 1500)
        XCTAssertEqual(try env.info().readersInUse >= 0, true)
    }

    func testForeignMapGrowthIsAdoptedOnTransactionBegin() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, configuration: .init(mapSizeBytes: 64 << 10))
        let db = try env.openDatabase(name: "events")

        // Stand-in for another process: a raw second handle on the same files (test only; the layer forbids
        // this, because closing it drops the first handle's POSIX locks). It grows the map and fills it.
        var other: OpaquePointer?
        XCTAssertEqual(mdb_env_create(&other), 0)
        XCTAssertEqual(mdb_env_set_mapsize(other, 4 << 20), 0)
        XCTAssertEqual(mdb_env_set_maxdbs(other, 4), 0)
        XCTAssertEqual(mdb_env_open(other, dir.path, UInt32(MDB_NOTLS), 0o640), 0)
        var txn: OpaquePointer?
        var dbi: MDB_dbi = 0
        XCTAssertEqual(mdb_txn_begin(other, nil, 0, &txn), 0)
        XCTAssertEqual(mdb_dbi_open(txn, "events", 0, &dbi), 0)
        var payload = [UInt8](repeating: 7, count: 512 << 10)
        try withBigEndianKey(1) { key in
            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            var v = MDB_val(mv_size: payload.count, mv_data: payload.withUnsafeMutableBytes { $0.baseAddress })
            try lmdbCheck(mdb_put(txn, dbi, &k, &v, 0), "mdb_put")
        }
        XCTAssertEqual(mdb_txn_commit(txn), 0)
        payload = []

        // Our environment's map is smaller than the data now: begin sees MDB_MAP_RESIZED and adopts.
        XCTAssertLessThan(try env.mapSizeBytes, 4 << 20)
        XCTAssertEqual(try env.read { try $0.get(db, key: LMDBBigEndianKey(1))?.count }, 512 << 10)
        XCTAssertGreaterThanOrEqual(try env.mapSizeBytes, 4 << 20)
        try env.close()
        mdb_env_close(other)
    }

    func testReaderCheckAndRuntimeFlags() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, configuration: .init(flags: .noMetaSync))
        XCTAssertEqual(try env.readerCheck(), 0)
        XCTAssertTrue(try env.flags.contains(.noMetaSync))
        try env.setFlags(.noSync, enabled: true)
        XCTAssertTrue(try env.flags.contains(.noSync))
        try env.setFlags(.noSync, enabled: false)
        XCTAssertFalse(try env.flags.contains(.noSync))
        self.assertLMDBError(.invalidArgument) { try env.setFlags(.writeMap, enabled: true) }
        try env.sync(force: true)
        let info = try env.info()
        XCTAssertEqual(info.maxReaders, 126)
        XCTAssertEqual(info.readersInUse, 0)
    }

    func testHotBackupOpensWithSameData() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.sub("live"))
        let db = try env.openDatabase(name: "events")
        try env.write { txn in
            for key: UInt64 in 0..<200 { try txn.put(db, key: LMDBBigEndianKey(key), value: value(for: key, bytes: 100)) }
        }
        let reader = try env.beginRead()  // a live reader does not block a hot backup
        for compact in [true, false] {
            let target = dir.sub("backups/\(compact ? "compact" : "plain")")
            try env.copy(to: target, compact: compact)
            let copy = try LMDBEnvironment(path: target)
            let copiedDB = try copy.openDatabase(name: "events", create: false)
            try copy.read { txn in
                XCTAssertEqual(try txn.stat(copiedDB).entries, 200)
                XCTAssertEqual(try txn.getBytes(copiedDB, key: LMDBBigEndianKey(199)), value(for: 199, bytes: 100))
            }
            try copy.close()
        }
        reader.abort()
        self.assertLMDBError(.backupTargetNotEmpty) { try env.copy(to: dir.sub("backups/plain"), compact: false) }
    }

    func testErrorCodeNamesAndMessages() {
        let notFound = LMDBError(returnCode: -30798, operation: "mdb_get")
        XCTAssertEqual(notFound.code, .notFound)
        XCTAssertEqual(notFound.code.name, "MDB_NOTFOUND")
        XCTAssertEqual(notFound.message, "MDB_NOTFOUND: No matching key/data pair found")
        XCTAssertTrue(notFound.description.contains("mdb_get"))

        let mapFull = LMDBError(returnCode: MDB_MAP_FULL, operation: "mdb_put")
        XCTAssertTrue(mapFull.isMapFull)
        XCTAssertTrue(mapFull.message.contains("mapsize"), mapFull.message)
        XCTAssertTrue(LMDBError(returnCode: MDB_MAP_RESIZED, operation: "mdb_txn_begin").isMapResized)

        let expected: [(Int32, LMDBError.Code, String)] = [
            (MDB_KEYEXIST, .keyExist, "MDB_KEYEXIST"), (MDB_PAGE_NOTFOUND, .pageNotFound, "MDB_PAGE_NOTFOUND"),
            (MDB_CORRUPTED, .corrupted, "MDB_CORRUPTED"), (MDB_PANIC, .panic, "MDB_PANIC"),
            (MDB_VERSION_MISMATCH, .versionMismatch, "MDB_VERSION_MISMATCH"), (MDB_INVALID, .invalid, "MDB_INVALID"),
            (MDB_DBS_FULL, .dbsFull, "MDB_DBS_FULL"), (MDB_READERS_FULL, .readersFull, "MDB_READERS_FULL"),
            (MDB_TLS_FULL, .tlsFull, "MDB_TLS_FULL"), (MDB_TXN_FULL, .txnFull, "MDB_TXN_FULL"),
            (MDB_CURSOR_FULL, .cursorFull, "MDB_CURSOR_FULL"), (MDB_PAGE_FULL, .pageFull, "MDB_PAGE_FULL"),
            (MDB_INCOMPATIBLE, .incompatible, "MDB_INCOMPATIBLE"), (MDB_BAD_RSLOT, .badReaderSlot, "MDB_BAD_RSLOT"),
            (MDB_BAD_TXN, .badTxn, "MDB_BAD_TXN"), (MDB_BAD_VALSIZE, .badValueSize, "MDB_BAD_VALSIZE"),
            (MDB_BAD_DBI, .badDBI, "MDB_BAD_DBI"), (ENOSPC, .diskFull, "ENOSPC"), (EACCES, .accessDenied, "EACCES"),
            (ENOENT, .noSuchFileOrDirectory, "ENOENT"), (EIO, .ioError, "EIO"), (ENOMEM, .outOfMemory, "ENOMEM"),
            (EINVAL, .invalidArgument, "EINVAL"), (EPERM, .system(EPERM), "errno(\(EPERM))"),
        ]
        for (raw, code, name) in expected {
            let error = LMDBError(returnCode: raw, operation: "op")
            XCTAssertEqual(error.code, code)
            XCTAssertEqual(error.code.name, name)
            XCTAssertEqual(error.returnCode, raw)
            XCTAssertFalse(error.message.isEmpty)
        }
        XCTAssertEqual(LMDBError(returnCode: ENOSPC, operation: "mdb_txn_commit").message,
                       String(cString: strerror(ENOSPC)))
    }

    func testOpeningTheSamePathTwiceThrows() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.sub("env"))
        // Same directory, different spelling: the registry compares realpaths.
        self.assertLMDBError(.environmentAlreadyOpen) { _ = try LMDBEnvironment(path: dir.sub("./env/../env/")) }
        try env.close()
        let reopened = try LMDBEnvironment(path: dir.sub("env"))
        try reopened.close()
    }

    /// Resident KiB of this process's mappings of `file` (the `Rss:` of its lines in /proc/self/smaps).
    private func residentKiB(ofMappingsOf file: String) throws -> Int {
        // Read to the end: /proc files report size 0, which whole-file readers may trust.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps"))
        defer { try? handle.close() }
        let smaps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        var inFile = false
        var total = 0
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), first.first?.isHexDigit == true {
                inFile = fields.last.map(String.init) == file
            } else if inFile, fields.first == "Rss:", fields.count >= 2, let kib = Int(fields[1]) {
                total += kib
            }
        }
        return total
    }

    func testReleaseMappedPagesDropsResidentPagesAndKeepsData() throws {
        let dir = TemporaryDirectory()
        let env = try LMDBEnvironment(path: dir.path, configuration: .init(mapSizeBytes: 256 << 20))
        let db = try env.openDatabase(name: "log")
        let records = 8_000  // 2 KiB each: about 16 MiB of pages
        try env.write { txn in
            for key in 0..<UInt64(records) { try txn.put(db, key: LMDBBigEndianKey(key), value: value(for: key, bytes: 2048)) }
        }
        let file = dir.path + "/data.mdb"
        // Read everything through the map: its pages become resident in this process.
        let sum = try env.read { txn in
            try (0..<UInt64(records)).reduce(0) { $0 + Int(try txn.getBytes(db, key: LMDBBigEndianKey($1))!.last!) }
        }
        let before = try self.residentKiB(ofMappingsOf: file)
        XCTAssertGreaterThan(before, 8 << 10, "reading 16 MiB through the map makes it resident")

        let released = try env.releaseMappedPages()
        XCTAssertGreaterThanOrEqual(released, records * 2048)
        let after = try self.residentKiB(ofMappingsOf: file)
        XCTAssertLessThan(after, 1 << 10, "released: \(after) KiB still resident (was \(before))")

        // The data is intact, and a read transaction open across the release still reads it.
        let reader = try env.beginRead()
        let first = try reader.getBytes(db, key: LMDBBigEndianKey(7))
        try env.releaseMappedPages()
        XCTAssertEqual(try reader.getBytes(db, key: LMDBBigEndianKey(7)), first)
        XCTAssertEqual(first, value(for: 7, bytes: 2048))
        reader.abort()
        XCTAssertEqual(try env.read { txn in
            try (0..<UInt64(records)).reduce(0) { $0 + Int(try txn.getBytes(db, key: LMDBBigEndianKey($1))!.last!) }
        }, sum)
        try env.close()
        XCTAssertThrowsError(try env.releaseMappedPages())
    }
}
