import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation

struct LogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Inspect and maintain the event log.",
        subcommands: [Stat.self, Dump.self, Verify.self, Backup.self, Reindex.self, Filter.self, Tail.self]
    )

    struct Stat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Record count, sequence range, bytes, indexes and how far they are applied.")
        @OptionGroup var options: DataOption
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            let stat: LogStat
            do { stat = try log.stat() } catch { fail("\(error)") }
            if self.json {
                printJSON(statJSON(stat))
            } else {
                print("records        \(stat.records)")
                print("sequence       \(stat.firstSeq)...\(stat.lastSeq)")
                print("file bytes     \(stat.fileBytes) (records use \(stat.recordBytes), map \(stat.mapSizeBytes))")
                print("actors         \(stat.actors)")
                print("snapshots      \(stat.snapshots)")
                print("head hash      \(stat.headHash)")
                for index in stat.indexes {
                    print("index \(index.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(index.entries) entries, applied to \(index.appliedSeq)\(index.inMainCommit ? " (main commit)" : "")")
                }
            }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Decoded records as JSON lines.")
        @OptionGroup var options: DataOption
        @Option(help: "First sequence number.") var from: UInt64 = 1
        @Option(help: "Most records to print.") var limit: Int = .max

        func run() throws {
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            let decoder = EnvelopeDecoder()
            var printed = 0
            do {
                try log.scanRaw(from: self.from) { seq, bytes in
                    guard printed < self.limit else { return false }
                    do {
                        print(try decoder.decodeRecord(bytes).json.rendered())
                    } catch {
                        print(JSON.object([("seq", .uint(seq)), ("error", .string("\(error)"))]).rendered())
                    }
                    printed += 1
                    return printed < self.limit
                }
            } catch {
                fail("\(error)")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the hash chain and the invariants; exit non-zero naming the first bad record.")
        @OptionGroup var options: DataOption
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let log = openLog(self.options.data, readOnly: true)
            let start = ContinuousClock.now
            let report: VerifyReport
            do { report = try log.verify() } catch { fail("\(error)") }
            log.close()
            let seconds = (ContinuousClock.now - start).seconds
            if self.json {
                var members: [(String, JSON)] = [
                    ("passed", .bool(report.passed)), ("records", .int(Int64(report.records))),
                    ("first_seq", .uint(report.firstSeq)), ("last_seq", .uint(report.lastSeq)),
                    ("actors", .int(Int64(report.actors))), ("head_hash", .string(report.headHash.description)),
                    ("seconds", .double(seconds)),
                ]
                if let problem = report.firstProblem {
                    members.append((
                        "first_bad_record",
                        .object([("seq", .uint(problem.seq)), ("kind", .string(problem.kind.rawValue)), ("message", .string(problem.message))])
                    ))
                }
                printJSON(.object(members))
            } else if let problem = report.firstProblem {
                print("FAILED: first bad record \(problem.seq) (\(problem.kind.rawValue)): \(problem.message)")
                print("checked \(report.records) records before it")
            } else {
                print("OK: \(report.records) records (\(report.firstSeq)...\(report.lastSeq)), \(report.actors) actors, hash chain intact, head \(report.headHash)")
            }
            if !report.passed { throw ExitCode(2) }
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A consistent, compacted hot copy of the log.")
        @OptionGroup var options: DataOption
        @Option(help: "The folder to copy into; it must be new or empty.") var to: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            let start = ContinuousClock.now
            do { try log.backup(to: self.to) } catch { fail("\(error)") }
            let size = EventLog.dataFileBytes(in: self.to)
            if self.json {
                printJSON(.object([("to", .string(self.to)), ("bytes", .int(Int64(size))), ("seconds", .double((ContinuousClock.now - start).seconds))]))
            } else {
                print("backed up \(self.options.data) to \(self.to) (\(size) bytes)")
            }
        }
    }

    struct Reindex: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rebuild the secondary indexes (correlation, actor) from the log.")
        @OptionGroup var options: DataOption

        func run() async throws {
            let log = openLog(self.options.data)
            do { try await log.rebuildIndexes() } catch { fail("\(error)") }
            log.close()
            print("rebuilt the correlation and actor indexes")
        }
    }
}

func statJSON(_ stat: LogStat) -> JSON {
    .object([
        ("records", .int(Int64(stat.records))),
        ("first_seq", .uint(stat.firstSeq)),
        ("last_seq", .uint(stat.lastSeq)),
        ("bytes", .int(Int64(stat.fileBytes))),
        ("record_bytes", .int(Int64(stat.recordBytes))),
        ("map_size_bytes", .int(Int64(stat.mapSizeBytes))),
        ("actors", .int(Int64(stat.actors))),
        ("snapshots", .int(Int64(stat.snapshots))),
        ("head_hash", .string(stat.headHash.description)),
        ("format_version", .int(Int64(stat.formatVersion))),
        (
            "indexes",
            .object(stat.indexes.map { index in
                (index.name, .object([
                    ("entries", .int(Int64(index.entries))), ("applied_seq", .uint(index.appliedSeq)),
                    ("in_main_commit", .bool(index.inMainCommit)),
                ]))
            })
        ),
    ])
}

extension Duration {
    var seconds: Double {
        let parts = self.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
