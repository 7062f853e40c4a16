import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTravel
import Foundation

// Time-travel debugging (issue 6): travel, diff, trace, log filter, log tail, capsules.
// The logic lives in CartritaTravel; these commands parse, call it, and print.

/// `--actor` as an address, refused early when it is not one.
func parseAddress(_ text: String) throws -> Address {
    do {
        return try Address(validating: text)
    } catch {
        throw ValidationError("'\(text)' is not an actor address (kind.name@vMAJOR.MINOR): \(error)")
    }
}

func parseCorrelation(_ text: String) throws -> MessageID {
    guard let id = MessageID(string: text) else { throw ValidationError("'\(text)' is not a message id (a UUID)") }
    return id
}

/// Runs a travel operation; a refusal is printed with its code and exits 1.
func travelling<T>(_ body: () throws(TravelError) -> T) -> T {
    do {
        return try body()
    } catch {
        fail("\(error)")
    }
}

// MARK: - cartrita travel

struct Travel: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Each actor's state (or one actor's) at a sequence number: nearest snapshot at or before it, plus replay.",
        discussion: """
            At the log's last sequence number the digests equal those `cartrita recover` prints. Travel only \
            reads the log (it may be open by a running node); it does not compare effects with the log (that is \
            `recover`'s and `capsule replay`'s check).
            """)

    @OptionGroup var options: DataOption
    @Option(help: "The sequence number to travel to.") var at: UInt64
    @Option(help: "Only this actor (an address such as orchestrator@v1.0).") var actor: String?
    @Flag(help: "Ignore snapshots: replay each actor from its first record (the answer must be the same).") var noSnapshots = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let actors = try self.actor.map { [try parseAddress($0)] }
        let log = openLog(self.options.data, readOnly: true)
        defer { log.close() }
        let started = ContinuousClock.now
        let result = travelling { () throws(TravelError) in
            let origin = simulationOrigin(self.options.data)
            return try TimeTravel(log: log, hierarchy: origin.hierarchy, useSnapshots: !self.noSnapshots, buggify: origin.buggify)
                .state(at: self.at, actors: actors)
        }
        let milliseconds = (ContinuousClock.now - started).seconds * 1000
        if self.json {
            printJSON(.object([
                ("at", .uint(result.at)),
                ("actors", .object(result.actors.map { actor in
                    (actor.address.rawValue, .object([
                        ("digest", .string(actor.digest)), ("state", actor.state.json), ("last_seq", .uint(actor.lastSeq)),
                        ("snapshot_seq", .uint(actor.snapshotSeq)), ("replayed", .int(Int64(actor.replayed))),
                    ]))
                })),
                ("records_replayed", .int(Int64(result.recordsReplayed))), ("travel_ms", .double(milliseconds)),
            ]))
        } else {
            print("at seq \(result.at) (\(result.recordsReplayed) records replayed in \(String(format: "%.1f", milliseconds)) ms)")
            for actor in result.actors {
                print("\(actor.address) last_seq \(actor.lastSeq) digest \(actor.digest) (from snapshot \(actor.snapshotSeq), \(actor.replayed) replayed)")
                print("  \(actor.state.json.rendered())")
            }
        }
    }
}

/// The hierarchy and BUGGIFY sites a log was made with: the standard ones, or those of the
/// simulated run whose `simulation.json` lies beside it (`sim --write-log`), so that travel
/// replays agent crashes and BUGGIFY choices as the run made them.
func simulationOrigin(_ data: String) -> (hierarchy: Hierarchy, buggify: Buggify?) {
    do {
        guard let origin = try SimulationOrigin.load(data) else { return (.standard(), nil) }
        return (origin.hierarchy, origin.buggify)
    } catch {
        fail("\(error)")
    }
}

// MARK: - cartrita diff

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-actor state differences between two sequence numbers, field by field.")

    @OptionGroup var options: DataOption
    @Option(help: "The earlier sequence number.") var from: UInt64
    @Option(help: "The later sequence number.") var to: UInt64
    @Option(help: "Only this actor.") var actor: String?
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let actors = try self.actor.map { [try parseAddress($0)] }
        let log = openLog(self.options.data, readOnly: true)
        defer { log.close() }
        let diffs = travelling { () throws(TravelError) in
            let origin = simulationOrigin(self.options.data)
            return try TimeTravel(log: log, hierarchy: origin.hierarchy, buggify: origin.buggify).diff(from: self.from, to: self.to, actors: actors)
        }
        if self.json {
            printJSON(.object([
                ("from", .uint(self.from)), ("to", .uint(self.to)),
                ("actors", .object(diffs.map { diff in
                    (diff.address.rawValue, .object([
                        ("from_digest", .string(diff.fromDigest)), ("to_digest", .string(diff.toDigest)),
                        ("changes", .array(diff.changes.map { change in
                            .object([("path", .string(change.path)), ("old", change.old?.json ?? .null), ("new", change.new?.json ?? .null)]
                                + [("kind", .string(change.old == nil ? "added" : change.new == nil ? "removed" : "changed"))])
                        })),
                        ("omitted", .int(Int64(diff.omitted))),
                    ]))
                })),
            ]))
        } else {
            if diffs.isEmpty { print("no actor changed between seq \(self.from) and \(self.to)") }
            for diff in diffs {
                print("\(diff.address) \(diff.fromDigest.prefix(12)) → \(diff.toDigest.prefix(12))")
                for change in diff.changes {
                    switch (change.old, change.new) {
                    case (nil, let new?): print("+ \(change.path): \(new.json.rendered())")
                    case (let old?, nil): print("- \(change.path): \(old.json.rendered())")
                    default:
                        print("  \(change.path): \(change.old?.json.rendered() ?? "null") → \(change.new?.json.rendered() ?? "null")")
                    }
                }
                if diff.omitted > 0 { print("  … and \(diff.omitted) more changes") }
            }
        }
    }
}

// MARK: - cartrita trace

enum TraceFormat: String, ExpressibleByArgument, CaseIterable {
    case tree
    case otlpJSON = "otlp-json"
}

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The causal tree of a task (from parent_id), with per-hop timings, retries and errors; or the same as OTLP/JSON spans.")

    @OptionGroup var options: DataOption
    @Argument(help: "The task's correlation id.") var correlation: String
    @Option(help: "tree (text, or JSON with --json) or otlp-json (OTLP/JSON resourceSpans for a tracing backend).")
    var format: TraceFormat = .tree
    @Flag(help: "Print one JSON object (the tree with --format tree).") var json = false

    func run() throws {
        let correlation = try parseCorrelation(self.correlation)
        let log = openLog(self.options.data, readOnly: true)
        defer { log.close() }
        let trace = travelling { () throws(TravelError) in try TaskTrace.load(log: log, correlation: correlation) }
        switch self.format {
        case .otlpJSON: printJSON(trace.otlpJSON)
        case .tree where self.json: printJSON(trace.json)
        case .tree: print(trace.renderTree())
        }
    }
}

// MARK: - cartrita log filter / log tail

extension LogCommand {
    struct Filter: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Records that match every condition given, as JSON lines (like `log dump`).",
            discussion: "--actor selects the records addressed to the actor (its own records). Times are delivery times (clock_ms): Unix milliseconds or ISO 8601.")
        @OptionGroup var options: DataOption
        @Option(help: "Records addressed to this actor.") var actor: String?
        @Option(help: "Message type (task_request, task_response, task_error, …).") var type: String?
        @Option(help: "Records of this task (correlation id).") var correlation: String?
        @Option(help: "Delivered at or after this time.") var since: String?
        @Option(help: "Delivered at or before this time.") var until: String?
        @Option(help: "Most records to print.") var limit: Int = .max

        func run() throws {
            var filter = RecordFilter()
            filter.actor = try self.actor.map(parseAddress)
            if let type = self.type {
                guard let parsed = MessageType(rawValue: type) else {
                    throw ValidationError("unknown message type '\(type)' (one of \(MessageType.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                filter.type = parsed
            }
            filter.correlation = try self.correlation.map(parseCorrelation)
            do {
                filter.sinceMilliseconds = try self.since.map(RecordFilter.parseTime)
                filter.untilMilliseconds = try self.until.map(RecordFilter.parseTime)
            } catch {
                throw ValidationError("\(error)")
            }
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            var printed = 0
            travelling { () throws(TravelError) in
                try log.filter(filter) { record in
                    guard printed < self.limit else { return false }
                    print(record.json.rendered())
                    printed += 1
                    return printed < self.limit
                }
            }
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The last records as JSON lines; with -f, keep printing records as they are committed.",
            discussion: "Opens the log read-only, so it can follow a log that `cartrita run` or `serve` is writing. Stop it with Ctrl-C.")
        @OptionGroup var options: DataOption
        @Flag(name: [.customShort("f"), .long], help: "Follow: print new records as they are committed.") var follow = false
        @Option(name: [.customShort("n"), .long], help: "How many of the existing records to print first.") var lines: UInt64 = 10
        @Option(help: "How often to look for new records, in milliseconds.") var pollMs: UInt32 = 100

        func validate() throws {
            guard self.pollMs >= 1 else { throw ValidationError("--poll-ms must be >= 1") }
        }

        func run() throws {
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            let follower = LogFollower(log: log, lastRecords: self.lines)
            while true {
                // Whole pages while the writer is ahead; a pause only when caught up.
                var lines: [String] = []
                let count = travelling { () throws(TravelError) in
                    try follower.poll { record in lines.append(record.json.rendered()) }
                }
                // One write per poll: whole lines, flushed as soon as they are committed.
                if !lines.isEmpty { printFlushed(lines.joined(separator: "\n")) }
                guard count < LogFollower.pollLimit || self.follow else { continue }
                guard self.follow else { return }  // caught up with what was there
                if count == 0 { usleep(self.pollMs * 1000) }
            }
        }
    }
}

// MARK: - cartrita capsule

struct CapsuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capsule",
        abstract: "Incident capsules: a task or a range of the log in one file, replayed offline bit for bit.",
        subcommands: [Export.self, Replay.self])

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pack a task (--correlation) or a range (--from/--to) with the snapshots it starts from into one file.",
            discussion: "The byte format is Schemas/capsule.md.")
        @OptionGroup var options: DataOption
        @Option(help: "The task's correlation id.") var correlation: String?
        @Option(help: "First sequence number of a range.") var from: UInt64?
        @Option(help: "Last sequence number of a range.") var to: UInt64?
        @Option(name: [.customShort("o"), .long], help: "The capsule file to write.") var output: String
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            switch (self.correlation, self.from, self.to) {
            case (.some, nil, nil), (nil, .some, .some): return
            default: throw ValidationError("give either --correlation ID or both --from SEQ and --to SEQ")
            }
        }

        func run() throws {
            let correlation = try self.correlation.map(parseCorrelation)
            let log = openLog(self.options.data, readOnly: true)
            defer { log.close() }
            let travel = TimeTravel(log: log)
            let capsule = travelling { () throws(TravelError) in
                if let correlation { return try travel.exportCapsule(correlation: correlation) }
                return try travel.exportCapsule(from: self.from!, to: self.to!)
            }
            let bytes = capsule.encode()
            // Written beside the target and renamed: a reader never sees half a capsule.
            let temporary = self.output + ".partial"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else { fail("cannot write \(temporary)") }
            do {
                if FileManager.default.fileExists(atPath: self.output) { try FileManager.default.removeItem(atPath: self.output) }
                try FileManager.default.moveItem(atPath: temporary, toPath: self.output)
            } catch {
                fail("cannot write \(self.output): \(error)")
            }
            if self.json {
                printJSON(.object([
                    ("file", .string(self.output)), ("bytes", .int(Int64(bytes.count))), ("kind", .string(capsule.meta.kind.rawValue)),
                    ("from_seq", .uint(capsule.meta.fromSeq)), ("to_seq", .uint(capsule.meta.toSeq)),
                    ("records", .int(Int64(capsule.records.count))), ("snapshots", .int(Int64(capsule.snapshots.count))),
                    ("actors", .array(capsule.meta.actors.map { .string($0.rawValue) })),
                ]))
            } else {
                print("wrote \(self.output): \(bytes.count) bytes, records \(capsule.meta.fromSeq)...\(capsule.meta.toSeq) (\(capsule.records.count) kept), \(capsule.meta.actors.count) actors, \(capsule.snapshots.count) snapshots")
            }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay a capsule offline with this build; report the first divergence and whether every actor reached its recorded digest.",
            discussion: "Exit 0: bit-exact. Exit 2: a divergence or a different digest. Exit 1: the capsule is refused (truncated, wrong checksum, unknown version…).")
        @Argument(help: "The capsule file.") var file: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            guard let data = FileManager.default.contents(atPath: self.file) else { fail("cannot read \(self.file)") }
            let report: CapsuleReplayReport
            do {
                report = try Capsule.decode([UInt8](data)).replay()
            } catch {
                if self.json { printJSON(.object([("error", .object([("code", .string(error.code.rawValue)), ("message", .string(error.message))]))])) }
                fail("\(error)")
            }
            if self.json {
                var members: [(String, JSON)] = [
                    ("passed", .bool(report.passed)), ("kind", .string(report.meta.kind.rawValue)),
                    ("from_seq", .uint(report.meta.fromSeq)), ("to_seq", .uint(report.meta.toSeq)),
                    ("records", .int(Int64(report.records))), ("replayed", .int(Int64(report.replayed))),
                ]
                if let divergence = report.divergence {
                    members.append(("divergence", .object([
                        ("seq", .uint(divergence.seq)), ("actor", .string(divergence.actor.rawValue)), ("message", .string(divergence.message)),
                        ("logged", .string(divergence.logged)), ("replayed", .string(divergence.replayed)),
                    ])))
                } else {
                    members.append(("divergence", .null))
                }
                members.append(("actors", .object(report.actors.map { actor in
                    (actor.address.rawValue, .object([
                        ("digest", .string(actor.digest)), ("expected", actor.expected.map(JSON.string) ?? .null),
                        ("matches", .bool(actor.matches)), ("last_seq", .uint(actor.lastSeq)),
                    ]))
                })))
                members += [
                    ("snapshots_refused", .array(report.snapshotsRefused.map { .string($0.rawValue) })),
                    ("made_outside", .int(Int64(report.madeOutside))), ("seconds", .double(report.seconds)),
                    ("messages_per_s", .double(report.messagesPerSecond)),
                ]
                printJSON(.object(members))
            } else {
                if let divergence = report.divergence { print(divergence) }
                for actor in report.actors {
                    print("\(actor.address) digest \(actor.digest) \(actor.matches ? "matches" : "DIFFERS from \(actor.expected ?? "(none recorded)")")")
                }
                for actor in report.snapshotsRefused { print("\(actor): this build does not read the capsule's snapshot format") }
                print("\(report.passed ? "bit-exact" : "NOT bit-exact"): \(report.replayed) records replayed of \(report.records) in \(String(format: "%.3f", report.seconds)) s")
            }
            if !report.passed { throw ExitCode(2) }
        }
    }
}
