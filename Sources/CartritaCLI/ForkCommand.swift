import ArgumentParser
import CartritaEnvelope
import CartritaLog
import CartritaTravel
import Foundation

// MARK: - cartrita fork

struct ForkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fork",
        abstract: "A counterfactual: branch the log at a seq, swap one recorded message or I/O result, run forward into a new log.",
        discussion: """
            The records before --at are copied (same bytes); the actors start as they were there (nearest snapshot \
            plus replay), the record at --replace is swapped for FILE's message (Schemas/fork-replacement.md), and \
            the same actors run forward in the original's order, with the recorded clock and entropy; messages only \
            the fork makes get entropy from a generator seeded by the branch. Prints, per task, the original and \
            the fork's outcome where they differ, and every actor's digest in both.
            """)

    @OptionGroup var options: DataOption
    @Option(help: "The branch point: the first seq the fork runs again.") var at: UInt64
    @Option(help: "SEQ=FILE: the record at SEQ (at or after --at) is replaced by FILE's message or I/O result.") var replace: String
    @Option(name: .customShort("o"), help: "A new, empty folder for the fork's log.") var output: String
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let parts = self.replace.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let seq = UInt64(parts[0]), !parts[1].isEmpty else {
            throw ValidationError("--replace is SEQ=FILE (for example 1234=answer.json), not '\(self.replace)'")
        }
        let file = String(parts[1])
        guard let data = FileManager.default.contents(atPath: file) else { fail("io: cannot read the replacement file \(file)") }
        let replacement = travelling { () throws(TravelError) in try ForkReplacement.parse([UInt8](data)) }
        let log = openLog(self.options.data, readOnly: true)
        defer { log.close() }
        // A simulation's log forks with the run's hierarchy (its agent crash rule) and BUGGIFY
        // sites, as `travel` replays it; the standard ones would explain none of its faults.
        let origin = simulationOrigin(self.options.data)
        let travel = TimeTravel(log: log, hierarchy: origin.hierarchy, buggify: origin.buggify)
        let fork = Fork(travel: travel, at: self.at, replacedSeq: seq, replacement: replacement)
        // Checked before the output folder is made: a bad seq or file leaves nothing behind.
        _ = travelling { () throws(TravelError) in try fork.replacedEnvelope() }
        if let existing = try? FileManager.default.contentsOfDirectory(atPath: self.output), !existing.isEmpty {
            fail("\(TravelError.Code.forkTargetNotEmpty): \(self.output) is not empty: fork into a new folder")
        }
        // Relaxed: the fork is written in large batches and synced when it is closed; a fork cut
        // short by a crash is simply run again into a new folder.
        let output = openLog(self.output, durability: .relaxed)
        defer { output.close() }
        let report = travelling { () throws(TravelError) in try fork.run(into: output) }
        // The fork is that simulation's log too: the tools read it the same way.
        let description = self.options.data + "/" + SimulationOrigin.fileName
        if FileManager.default.fileExists(atPath: description) {
            do {
                try FileManager.default.copyItem(atPath: description, toPath: self.output + "/" + SimulationOrigin.fileName)
            } catch {
                fail("io: the fork is written but \(SimulationOrigin.fileName) could not be copied beside it: \(error)")
            }
        }
        if self.json {
            guard case .object(let members) = report.json else { return }
            printJSON(.object(members + [("output", .string(self.output))]))
            return
        }
        print("fork of \(self.options.data) at seq \(report.at), record \(report.replacedSeq) replaced → \(self.output) (\(report.forkLastSeq) records; original \(report.originalLastSeq))")
        print("records after the branch: \(report.asRecorded) as recorded, \(report.changed) changed, \(report.originalOnly) only in the original, \(report.new) new")
        print(report.identicalLog ? "the fork's log is identical to the original" : "\(report.tasksChanged) of \(report.tasksCompared) tasks end differently")
        for task in report.tasks {
            print("  \(task.correlation): \(task.original.status)\(task.original.error.map { " (\($0))" } ?? "") → \(task.fork.status)\(task.fork.error.map { " (\($0))" } ?? "")")
        }
        for actor in report.actors where !actor.same {
            print("  \(actor.address): \(actor.originalDigest.prefix(12)) → \(actor.forkDigest.prefix(12))")
        }
    }
}
