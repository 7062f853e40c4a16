// libFuzzer target for the envelope decoder (built by Tools/fuzz/run.sh, not by SwiftPM).
//
// Every input goes to `EnvelopeDecoder.decode`, `decodeRecord` and `decodeValue`. Whatever
// decodes must re-encode to bytes that decode to the same value, byte for byte. Any crash,
// sanitizer report or failed `check` is a finding.
//
// With CARTRITA_FUZZ_WRITE_SEEDS=<dir> in the environment, the binary writes a seed corpus of
// valid envelopes and records (from the tests' EnvelopeGenerator) into <dir> and exits.
#if canImport(Glibc)
import Glibc
#endif
import CartritaCodec
import CartritaEnvelope

nonisolated(unsafe) let decoder = EnvelopeDecoder()
nonisolated(unsafe) let encoder = EnvelopeEncoder()
nonisolated(unsafe) let writer = MsgPackWriter()

/// Writes a line to standard error (file descriptor 2; the C `stderr` global is not
/// concurrency-safe in Swift 6).
func report(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Like `precondition`, but also active in -Ounchecked builds, and says what failed.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        report("FUZZ CHECK FAILED: \(message())\n")
        abort()
    }
}

/// The structural scan must catch everything msgpack-c would refuse, so msgpack-c refusing
/// input (or running out of memory) after the scan passed is a bug in the scan.
func checkError(_ error: CodecError, _ api: String) {
    check(error.code != .outOfMemory, "\(api): out of memory: \(error)")
    check(!(error.code == .malformed && error.message.contains("msgpack-c refused")), "\(api): scan let through what msgpack-c refused: \(error)")
    check(!(error.code == .malformed && error.message.contains("scans disagree")), "\(api): fast and slow structural scans disagree: \(error)")
}

/// The value with every NaN replaced by a string naming its bits, so that `==` can compare
/// values that carry NaN. (`v == v` is no NaN test: Array's `==` returns true early when both
/// sides share storage, without comparing elements.)
func scrub(_ value: MCPValue) -> MCPValue {
    switch value {
    case .double(let number) where number.isNaN: return .string("NaN64:\(number.bitPattern)")
    case .float(let number) where number.isNaN: return .string("NaN32:\(number.bitPattern)")
    case .array(let items): return .array(items.map(scrub))
    case .map(let entries): return .map(entries.map { MCPValue.MapEntry($0.key, scrub($0.value)) })
    default: return value
    }
}

/// NaN can only be in the free-form values; every other double is validated finite.
func scrub(_ envelope: Envelope) -> Envelope {
    var envelope = envelope
    switch envelope.payload {
    case .taskRequest(var request):
        request.task.parameters = request.task.parameters.map { MCPValue.MapEntry($0.key, scrub($0.value)) }
        request.input.data = request.input.data.map(scrub)
        envelope.payload = .taskRequest(request)
    case .taskResponse(var response):
        response.result = response.result.map(scrub)
        envelope.payload = .taskResponse(response)
    default:
        break
    }
    return envelope
}

func fuzzEnvelope(_ bytes: UnsafeRawBufferPointer) {
    let envelope: Envelope
    do {
        envelope = try decoder.decode(bytes)
    } catch {
        checkError(error, "decode")
        return
    }
    do {
        let encoded = try encoder.encode(envelope)
        let again = try decoder.decode(encoded)
        check(try encoder.encode(again) == encoded, "decode(encode(e)) re-encodes differently")
        check(scrub(again) == scrub(envelope), "decode(encode(e)) != e")
        check(bytes.count > 0, "decoded an empty input")
    } catch {
        check(false, "a decoded envelope failed to re-encode or decode again: \(error)")
    }
}

func fuzzRecord(_ bytes: UnsafeRawBufferPointer) {
    let record: LogRecord
    do {
        record = try decoder.decodeRecord(bytes)
    } catch {
        checkError(error, "decodeRecord")
        return
    }
    do {
        writer.reset()
        writer.writeRecord(header: record.header, envelope: try encoder.encodeBody(record.envelope))
        let encoded = writer.bytes
        let again = try decoder.decodeRecord(encoded)
        check(again.header == record.header, "record header changed on re-encode")
        check(try encoder.encode(again.envelope) == (try encoder.encode(record.envelope)), "record envelope changed on re-encode")
        check(scrub(again.envelope) == scrub(record.envelope), "record envelope != after round trip")
    } catch {
        check(false, "a decoded record failed to re-encode or decode again: \(error)")
    }
}

func fuzzValue(_ bytes: UnsafeRawBufferPointer) {
    let value: MCPValue
    do {
        value = try decoder.decodeValue(bytes)
    } catch {
        checkError(error, "decodeValue")
        return
    }
    writer.reset()
    writer.write(value)
    let encoded = writer.bytes
    do {
        let again = try decoder.decodeValue(encoded)
        writer.reset()
        writer.write(again)
        check(writer.bytes == encoded, "decodeValue(write(v)) re-encodes differently")
        check(scrub(again) == scrub(value), "decodeValue round trip changed the value")
    } catch {
        check(false, "a decoded value failed to decode again: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    fuzzEnvelope(bytes)
    fuzzRecord(bytes)
    fuzzValue(bytes)
    return 0
}

// MARK: - Seed corpus

func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let file = fopen(path, "wb") else {
        report("cannot write \(path)\n")
        exit(1)
    }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
}

func writeSeeds(to directory: String) {
    var generator = EnvelopeGenerator(seed: 0xF022_5EED)
    generator.allowNaN = true
    generator.allowBig = false
    let types = MessageType.allCases
    var count = 0
    for index in 0..<(types.count * 20) {
        let envelope = generator.envelope(type: types[index % types.count])
        do {
            writeFile("\(directory)/envelope-\(index)", try encoder.encode(envelope))
            writer.reset()
            writer.writeRecord(header: generator.header(), envelope: try encoder.encodeBody(envelope))
            writeFile("\(directory)/record-\(index)", writer.bytes)
            count += 2
        } catch {
            report("seed \(index) failed to encode: \(error)\n")
            exit(1)
        }
    }
    // A few free-form values for decodeValue.
    for index in 0..<20 {
        writer.reset()
        writer.write(generator.value(depth: 4))
        writeFile("\(directory)/value-\(index)", writer.bytes)
        count += 1
    }
    print("wrote \(count) seeds to \(directory)")
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
    if let directory = getenv("CARTRITA_FUZZ_WRITE_SEEDS") {
        writeSeeds(to: String(cString: directory))
        exit(0)
    }
    return 0
}
