// Seeded generator of valid, canonical envelopes. No XCTest here: Tools/fuzz/run.sh compiles
// this file into the fuzzer too, to seed its corpus.
import CartritaCodec
import CartritaEnvelope

/// Generates random envelopes that pass `Envelope.validate()` and whose free-form values are in
/// canonical form (see `MCPValue`), so `decode(encode(e)) == e` must hold exactly.
struct EnvelopeGenerator {
    var random: SplitMix64
    var ids = UUIDv7Generator()
    /// Allow NaN in free-form doubles and floats (breaks `==`, not the byte-level round trip).
    var allowNaN = false
    /// Allow occasional big strings and binaries (str16/str32, bin16 forms).
    var allowBig = true

    init(seed: UInt64) {
        self.random = SplitMix64(seed: seed)
    }

    // MARK: Primitives

    mutating func next() -> UInt64 { self.random.next64() }

    /// Uniform in `range` (the modulo bias is irrelevant here).
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int(self.next() % span)
    }

    mutating func chance(_ percent: Int) -> Bool { self.int(0...99) < percent }

    mutating func bool() -> Bool { self.next() & 1 == 1 }

    mutating func pick<T>(_ items: [T]) -> T { items[self.int(0...(items.count - 1))] }

    /// Integers from every msgpack size class, both signs.
    mutating func int64(nonNegative: Bool = false) -> Int64 {
        let magnitude: UInt64
        switch self.int(0...6) {
        case 0: magnitude = self.next() % 128
        case 1: magnitude = self.next() % 256
        case 2: magnitude = self.next() % 65_536
        case 3: magnitude = self.next() % (1 << 32)
        case 4: magnitude = self.next() >> 1
        case 5: magnitude = self.pick([0, 127, 128, 255, 256, 32767, 32768, 65535, 65536, UInt64(Int32.max), UInt64(UInt32.max), UInt64(Int64.max)])
        default: magnitude = self.next() % 1000
        }
        if nonNegative || self.bool() { return Int64(magnitude) }
        return magnitude == UInt64(Int64.max) && self.bool() ? Int64.min : -Int64(magnitude)
    }

    mutating func int32(_ range: ClosedRange<Int32>) -> Int32 {
        if self.chance(20) { return self.pick([range.lowerBound, range.upperBound]) }
        return Int32(self.int(Int(range.lowerBound)...Int(range.upperBound)))
    }

    mutating func finite(_ range: ClosedRange<Double> = -1e12...1e12) -> Double {
        switch self.int(0...5) {
        case 0: return self.pick([range.lowerBound, range.upperBound, 0].filter { range.contains($0) })
        case 1: return Double(self.int(0...1000)).clamped(to: range)
        default:
            let unit = Double(self.next() >> 11) / Double(1 << 53)
            return range.lowerBound + unit * (range.upperBound - range.lowerBound)
        }
    }

    /// Any double, including subnormals, infinities and (if allowed) NaN.
    mutating func anyDouble() -> Double {
        switch self.int(0...9) {
        case 0: return self.pick([0.0, -0.0, 1.0, -1.5, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .pi])
        case 1: return self.allowNaN ? .nan : 0.1
        default:
            let bits = self.next()
            let value = Double(bitPattern: bits)
            return value.isNaN && !self.allowNaN ? Double(bits >> 12) : value
        }
    }

    mutating func anyFloat() -> Float {
        let bits = UInt32(truncatingIfNeeded: self.next())
        let value = Float(bitPattern: bits)
        if value.isNaN {
            // Keep a quiet NaN (msgpack-c widens float32 to double, which quiets signalling NaNs).
            return self.allowNaN ? .nan : Float(bits >> 9)
        }
        return value
    }

    static let scalarPool: [Unicode.Scalar] = [
        "a", "b", "z", "A", "Z", "0", "9", " ", "_", "-", ".", "/", "\"", "\\", "\n", "\t", "\u{0}", "\u{1}", "\u{7f}",
        "é", "ß", "ø", "中", "文", "日", "𝄞", "🎉", "👍", "\u{301}", "\u{200d}", "\u{feff}", "\u{fffd}", "\u{10ffff}", "\u{e000}",
    ]

    /// Unicode text: ASCII, control characters, combining marks, astral scalars.
    mutating func text(maxScalars: Int = 12, nonEmpty: Bool = false, mayBeBig: Bool = true) -> String {
        if mayBeBig && self.allowBig && self.chance(1) {
            // str16 and, rarely, str32 forms.
            // 65,536 bytes is both the smallest str32 and the largest text validation allows.
            let count = self.chance(10) ? 65_536 : self.int(256...3000)
            return String(repeating: "x", count: count)
        }
        let count = self.int((nonEmpty ? 1 : 0)...maxScalars)
        var scalars = String.UnicodeScalarView()
        for _ in 0..<count {
            if self.chance(60) {
                scalars.append(Unicode.Scalar(UInt8(self.int(0x61...0x7a))))
            } else {
                scalars.append(self.pick(Self.scalarPool))
            }
        }
        return String(scalars)
    }

    mutating func bytes(max: Int = 40) -> [UInt8] {
        let count = self.allowBig && self.chance(1) ? self.int(256...70_000) : self.int(0...max)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: self.next()) }
    }

    /// `[a-z0-9][a-z0-9_-]*`
    mutating func segment(maxLength: Int = 10) -> String {
        let first = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let rest = Array("abcdefghijklmnopqrstuvwxyz0123456789_-".utf8)
        var utf8 = [self.pick(first)]
        for _ in 0..<self.int(0...(maxLength - 1)) { utf8.append(self.pick(rest)) }
        return String(decoding: utf8, as: UTF8.self)
    }

    mutating func address(supervisor: Bool? = nil) -> Address {
        let kind = supervisor == true ? "supervisor" : self.pick(supervisor == false ? ["orchestrator", "agent"] : ["orchestrator", "supervisor", "agent", "micro"])
        var text = kind
        if kind != "orchestrator" || self.chance(20) {
            for _ in 0..<self.int(1...2) { text += "." + self.segment() }
        }
        text += "@v\(self.int(0...99999)).\(self.int(0...99999))"
        return Address(text)
    }

    mutating func id(atMillisecond milliseconds: Int64? = nil) -> MessageID {
        let ms = milliseconds ?? Int64(self.next() % (1 << 48))
        return self.ids.next(milliseconds: ms, entropy: &self.random)
    }

    mutating func errorCode() -> TaskErrorCode {
        if self.chance(50) {
            return self.pick([.ttlExpired, .unknownTaskType, .budgetExceeded, .agentCrashed, .timeout, .invalidInput, .unauthorized, .overloaded])
        }
        let letters = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        let rest = Array("abcdefghijklmnopqrstuvwxyz0123456789_".utf8)
        var utf8 = [self.pick(letters)]
        for _ in 0..<self.int(0...63) { utf8.append(self.pick(rest)) }
        return TaskErrorCode(rawValue: String(decoding: utf8, as: UTF8.self))
    }

    // MARK: Free-form values (canonical)

    mutating func value(depth: Int = 3) -> MCPValue {
        let kind = depth > 0 ? self.int(0...11) : self.int(0...8)
        switch kind {
        case 0: return .null
        case 1: return .bool(self.bool())
        case 2, 3: return .int(self.int64())
        case 4: return .uint(UInt64(Int64.max) + 1 + self.next() % (UInt64.max - UInt64(Int64.max)))
        case 5: return .double(self.anyDouble())
        case 6: return .float(self.anyFloat())
        case 7: return .string(self.text())
        case 8: return .binary(self.bytes(max: 20))
        case 9: return .array((0..<self.int(0...5)).map { _ in self.value(depth: depth - 1) })
        default: return .map(self.entries(depth: depth - 1, maxCount: 5))
        }
    }

    /// Unique keys (unique as Swift Strings, which compare by canonical equivalence).
    mutating func entries(depth: Int, maxCount: Int) -> [MCPValue.MapEntry] {
        var seen = Set<String>()
        var result: [MCPValue.MapEntry] = []
        for _ in 0..<self.int(0...maxCount) {
            let key = self.text(maxScalars: 6)
            guard seen.insert(key).inserted else { continue }
            result.append(MCPValue.MapEntry(key, self.value(depth: depth)))
        }
        return result
    }

    // MARK: Payloads

    mutating func amounts() -> ResourceAmounts {
        var amounts = ResourceAmounts()
        repeat {
            if self.bool() { amounts.tokens = self.int64(nonNegative: true) }
            if self.bool() { amounts.costUSD = self.finite(0...1e6) }
            if self.bool() { amounts.concurrencySlots = self.int64(nonNegative: true) }
            if self.bool() { amounts.memoryMB = self.int64(nonNegative: true) }
        } while amounts == ResourceAmounts()
        return amounts
    }

    mutating func taskType() -> String {
        let domain = self.pick(["llm", "huggingface", "vision", "audio", "system", "lifeos", "data", self.segment()])
        var type = domain
        for _ in 0..<self.int(1...3) { type += "." + self.segment() }
        return type
    }

    mutating func file() -> FileInput {
        let name = self.text(nonEmpty: true)
        let contentType = self.pick(["image/png", "application/pdf", "text/plain; charset=utf-8", self.text(nonEmpty: true)])
        if self.bool() {
            let bytes = self.bytes(max: 64)
            return FileInput(name: name, contentType: contentType, sizeBytes: Int64(bytes.count), source: .inline(bytes))
        }
        return FileInput(
            name: name, contentType: contentType, sizeBytes: self.int64(nonNegative: true),
            source: .url("https://files.example/" + self.segment() + "/" + self.text(maxScalars: 8, mayBeBig: false)))
    }

    mutating func payload(_ type: MessageType) -> Payload {
        switch type {
        case .ping: return .ping(Ping(nonce: self.next()))
        case .pong: return .pong(Pong(nonce: self.pick([0, 1, UInt64.max, self.next()])))
        case .heartbeat:
            return .heartbeat(
                Heartbeat(status: self.pick(HealthStatus.allCases), queueDepth: self.int64(nonNegative: true), inFlight: self.int64(nonNegative: true)))
        case .shutdown:
            return .shutdown(
                Shutdown(reason: self.text(), drain: self.bool(), deadlineMilliseconds: self.bool() ? self.int64(nonNegative: true) : nil))
        case .override:
            return .override(Override(action: self.pick(OverrideAction.allCases), reason: self.text()))
        case .taskRequest:
            var constraints: TaskConstraints?
            if self.bool() {
                constraints = TaskConstraints(
                    maxExecutionTimeMilliseconds: self.bool() ? max(1, self.int64(nonNegative: true)) : nil,
                    maxMemoryMB: self.bool() ? max(1, self.int64(nonNegative: true)) : nil,
                    maxCostUSD: self.bool() ? self.finite(0...1e9) : nil)
            }
            let task = TaskSpec(type: self.taskType(), parameters: self.entries(depth: 3, maxCount: 6), constraints: constraints)
            let input = TaskInput(
                data: self.bool() ? self.value(depth: 3) : nil, files: (0..<self.int(0...3)).map { _ in self.file() })
            let preferences =
                self.bool()
                ? TaskPreferences(qualityLevel: self.pick(QualityLevel.allCases), costOptimization: self.bool(), streaming: self.bool()) : nil
            return .taskRequest(TaskRequest(task: task, input: input, preferences: preferences))
        case .taskResponse:
            var metrics: TaskMetrics?
            if self.bool() {
                metrics = TaskMetrics(
                    processingTimeMilliseconds: self.bool() ? self.int64(nonNegative: true) : nil,
                    memoryUsedMB: self.bool() ? self.finite(0...1e6) : nil, costUSD: self.bool() ? self.finite(0...1e3) : nil,
                    tokensUsed: self.bool() ? self.int64(nonNegative: true) : nil, qualityScore: self.bool() ? self.finite(0...1) : nil)
            }
            return .taskResponse(
                TaskResponse(
                    status: self.pick(TaskStatus.allCases), result: self.bool() ? self.value(depth: 4) : nil, metrics: metrics,
                    errorMessage: self.bool() ? self.text(nonEmpty: true) : nil))
        case .taskError:
            return .taskError(TaskError(code: self.errorCode(), message: self.text(), retryable: self.bool()))
        case .taskProgress:
            var progress = TaskProgress(message: self.text())
            switch self.int(0...2) {
            case 0: progress.fraction = self.finite(0...1)
            case 1: progress.step = self.int64(nonNegative: true)
            default:
                progress.fraction = self.finite(0...1)
                progress.step = self.int64(nonNegative: true) % 1000
            }
            if self.bool() {
                let base = max(1, progress.step ?? 1)
                progress.totalSteps = base > Int64.max - 1000 || self.bool() ? base : base + self.int64(nonNegative: true) % 1000
            }
            return .taskProgress(progress)
        case .resourceRequest:
            return .resourceRequest(
                ResourceRequest(forCorrelationID: self.id(), amounts: self.amounts(), reason: self.bool() ? self.text(nonEmpty: true) : nil))
        case .resourceGrant:
            return .resourceGrant(
                ResourceGrant(
                    forCorrelationID: self.id(), amounts: self.amounts(),
                    leaseMilliseconds: self.bool() ? max(1, self.int64(nonNegative: true)) : nil))
        case .resourceDeny:
            return .resourceDeny(
                ResourceDeny(forCorrelationID: self.id(), requested: self.amounts(), code: self.errorCode(), reason: self.text(nonEmpty: true)))
        case .streamStart:
            return .streamStart(StreamStart(streamID: self.id(), contentType: self.text(nonEmpty: true)))
        case .streamData:
            return .streamData(StreamData(streamID: self.id(), index: self.int64(nonNegative: true), chunk: self.bytes(max: 128)))
        case .streamEnd:
            return .streamEnd(StreamEnd(streamID: self.id(), count: self.int64(nonNegative: true), digest: (0..<32).map { _ in UInt8(truncatingIfNeeded: self.next()) }))
        }
    }

    // MARK: Envelopes

    mutating func context() -> MessageContext {
        var context = MessageContext(
            traceID: TraceID(high: self.next(), low: self.next() | 1), spanID: SpanID(self.next() | 1 << 63))
        if self.bool() { context.userID = self.text(nonEmpty: true) }
        if self.bool() { context.conversationID = self.text(nonEmpty: true) }
        if self.bool() { context.sessionID = self.text(nonEmpty: true) }
        if self.bool() { context.workspaceID = self.text(nonEmpty: true) }
        if self.bool() {
            var seen = Set<String>()
            for _ in 0..<self.int(1...5) {
                let key = self.text(maxScalars: 8, nonEmpty: true)
                if seen.insert(key).inserted { context.customAttributes.append(StringPair(key, self.text())) }
            }
        }
        return context
    }

    mutating func envelope(type: MessageType? = nil) -> Envelope {
        let type = type ?? self.pick(MessageType.allCases)
        let timestamp: Int64 = self.chance(10) ? self.pick([0, (1 << 48) - 1]) : Int64(1_600_000_000_000 + self.int(0...400_000_000_000))
        let maxRetries = self.int32(0...Int32.max)
        let recipientIsSupervisor = self.chance(40)
        return Envelope(
            id: self.id(atMillisecond: timestamp),
            parentID: self.bool() ? self.id(atMillisecond: timestamp) : nil,
            correlationID: self.id(atMillisecond: timestamp),
            sender: self.address(),
            recipient: self.address(supervisor: recipientIsSupervisor),
            broadcast: recipientIsSupervisor && self.bool(),
            timestampMilliseconds: timestamp,
            ttlMilliseconds: self.int32(1...Int32.max),
            priority: self.pick(Priority.allCases),
            context: self.context(),
            payload: self.payload(type),
            deliveryMode: self.pick(DeliveryMode.allCases),
            retryCount: self.int32(0...maxRetries),
            maxRetries: maxRetries)
    }

    /// A random record header.
    mutating func header() -> RecordHeader {
        RecordHeader(
            seq: self.pick([0, 1, UInt64.max, self.next()]),
            prevHash: Digest32(words: (self.next(), self.next(), self.next(), self.next())),
            actorPrevSeq: self.bool() ? 0 : self.next(), clockMilliseconds: self.int64(), entropy: self.next())
    }
}

extension Double {
    func clamped(to range: ClosedRange<Double>) -> Double { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}
