import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation

@main
struct Cartrita: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cartrita",
        abstract: "Cartrita MCP: a hierarchical agent runtime on an LMDB event log.",
        subcommands: [
            Demo.self, Run.self, Recover.self, Sim.self, LogCommand.self, Bench.self, Travel.self, Diff.self, Trace.self, CapsuleCommand.self,
            ForkCommand.self, DebugCommand.self, Serve.self, Keys.self, Load.self,
        ]
    )
}

// MARK: - Shared options and output

struct DataOption: ParsableArguments {
    @Option(name: .long, help: "The data folder that holds the event log.")
    var data: String
}

extension Durability: ExpressibleByArgument {}

/// One JSON object on stdout, then a newline (the contract of every `--json`).
func printJSON(_ value: JSON) {
    print(value.rendered())
}

/// Prints a line and flushes at once: consumers (the crash test) read acknowledgements live.
func printFlushed(_ line: String) {
    // One write(2) per line: the reader sees whole lines the moment they are acknowledged.
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("cartrita: " + message + "\n").utf8))
    exit(1)
}

func openLog(_ path: String, readOnly: Bool = false, durability: Durability = .durable) -> EventLog {
    do {
        return try EventLog(path: path, configuration: EventLogConfiguration(durability: durability, readOnly: readOnly))
    } catch {
        fail("\(error)")
    }
}

extension LogRecord {
    /// The record as JSON: header keys, then the envelope's, as in the stored msgpack map.
    var json: JSON {
        guard case .object(let envelope) = self.envelope.json else { return .null }
        return .object(
            [
                ("v", .int(1)),
                ("seq", .uint(self.header.seq)),
                ("prev_hash", .string(self.header.prevHash.description)),
                ("actor_prev_seq", .uint(self.header.actorPrevSeq)),
                ("clock_ms", .int(self.header.clockMilliseconds)),
                ("entropy", .uint(self.header.entropy)),
            ] + envelope)
    }
}
