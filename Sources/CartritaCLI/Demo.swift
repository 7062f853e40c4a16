import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation

/// Hands out generated envelopes to concurrent producers.
final class TrafficSource: @unchecked Sendable {
    let lock = NSLock()
    var traffic: SampleTraffic
    var remaining: Int

    init(seed: UInt64, count: Int, payloadBytes: Int = 512) {
        self.traffic = SampleTraffic(seed: seed, payloadBytes: payloadBytes)
        self.remaining = count
    }

    func next() -> Envelope? {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard self.remaining > 0 else { return nil }
        self.remaining -= 1
        return self.traffic.next()
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a log of generated MCP traffic through the three tiers; print its stats and a few decoded records.")

    @OptionGroup var options: DataOption
    @Option(help: "How many messages to append.") var messages: Int = 10_000
    @Option(help: "Concurrent producers (group commit gathers their appends).") var producers: Int = 64
    @Option(help: "durable, relaxed or fast.") var durability: Durability = .durable
    @Option(help: "Seed of the generated traffic.") var seed: UInt64 = 1
    @Option(help: "How many decoded records to show.") var show: Int = 3
    @Flag(help: "Print `ACK SEQ ID` as each append is acknowledged (used by the crash test).") var printAcks = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard self.messages >= 0 else { throw ValidationError("--messages must be >= 0") }
        guard (1...100_000).contains(self.producers) else { throw ValidationError("--producers must be 1...100000") }
    }

    func run() async throws {
        let log = openLog(self.options.data, durability: self.durability)
        let firstNew = log.lastSeq + 1
        let source = TrafficSource(seed: self.seed &+ firstNew, count: self.messages)
        let printAcks = self.printAcks
        let start = ContinuousClock.now
        let failures = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<self.producers {
                group.addTask {
                    var failures = 0
                    while let envelope = source.next() {
                        do {
                            let seq = try await log.append(envelope, clockMilliseconds: envelope.timestampMilliseconds, entropy: envelope.id.low)
                            if printAcks { printFlushed("ACK \(seq) \(envelope.id)") }
                        } catch {
                            failures += 1
                            FileHandle.standardError.write(Data("append failed: \(error)\n".utf8))
                        }
                    }
                    return failures
                }
            }
            return await group.reduce(0, +)
        }
        let seconds = (ContinuousClock.now - start).seconds
        do { try await log.flush() } catch { fail("\(error)") }
        let stat: LogStat
        let sample: [LogRecord]
        do {
            stat = try log.stat()
            sample = try log.records(from: firstNew, limit: self.show)
        } catch {
            fail("\(error)")
        }
        log.close()
        let rate = seconds > 0 ? Double(self.messages - failures) / seconds : 0
        if self.json {
            printJSON(.object([
                ("appended", .int(Int64(self.messages - failures))), ("failed", .int(Int64(failures))),
                ("seconds", .double(seconds)), ("appends_per_s", .double(rate.rounded())),
                ("durability", .string(self.durability.rawValue)), ("producers", .int(Int64(self.producers))),
                ("stat", statJSON(stat)), ("sample", .array(sample.map { $0.json })),
            ]))
        } else if !self.printAcks {
            print("appended \(self.messages - failures) messages in \(String(format: "%.2f", seconds)) s (\(Int(rate)) per second, \(self.durability.rawValue), \(self.producers) producers)")
            print("log: \(stat.records) records, seq \(stat.firstSeq)...\(stat.lastSeq), \(stat.fileBytes) bytes, \(stat.actors) actors")
            print("first records written by this run:")
            for record in sample { print(record.json.rendered()) }
            print("next: cartrita log verify --data \(self.options.data)")
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
