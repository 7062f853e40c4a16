import CartritaCodec
import CartritaEnvelope
import CartritaRuntime
import Foundation

/// What `cartrita fork --replace SEQ=FILE` puts in place of the record at SEQ
/// (`Schemas/fork-replacement.md`). The replacement keeps the recorded message's header (id,
/// parent, correlation, sender, recipient, timestamp, mode, retries): a fork changes what was
/// said or what the outside world answered, not who said it to whom.
///
/// Two forms, one JSON object each:
/// - `{"version": 1, "type": "task_error", "payload": {...}}`: a message with another type and
///   payload (an agent's answer, a deny instead of a grant). The payload has the field names of
///   MCP-SPEC §3 as `cartrita log dump` prints them; binary as `{"$binary": "HEX"}`, and ids
///   (`correlation_id`, `stream_id`) as UUID text.
/// - `{"version": 1, "io_result": {"value": ANY}}` or
///   `{"version": 1, "io_result": {"error": {"code": "...", "message": "...", "retryable": false}}}`:
///   another answer of the I/O gateway to the request the replaced record answers.
package struct ForkReplacement: Sendable {
    package static let formatVersion: Int64 = 1
    /// A replacement file larger than this is refused (it holds one message).
    package static let maxFileBytes = 4 << 20

    package enum Content: Sendable {
        case message(type: MessageType, payload: MCPValue)
        case ioResult(IOResult)
    }

    package var content: Content

    /// Reads a replacement file; every mistake is `invalid_replacement` naming the field.
    package static func parse(_ bytes: [UInt8]) throws(TravelError) -> ForkReplacement {
        guard bytes.count <= Self.maxFileBytes else {
            throw Self.invalid("the file has \(bytes.count) bytes; a replacement holds one message (at most \(Self.maxFileBytes))")
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw Self.invalid("the file is not JSON: \(Self.describe(error))")
        }
        guard case .object(let members) = value else { throw Self.invalid("the file holds a JSON object, not \(value.kind)") }
        for key in members.keys.sorted() where !["version", "type", "payload", "io_result", "comment"].contains(key) {
            throw Self.invalid("unknown key \(key) (allowed: version, type, payload, io_result, comment)")
        }
        guard case .int(let version)? = members["version"] else { throw Self.invalid("version: required, the integer \(Self.formatVersion)") }
        guard version == Self.formatVersion else {
            throw TravelError(.unsupportedReplacementVersion, "replacement version \(version); this build reads version \(Self.formatVersion)")
        }
        if let io = members["io_result"] {
            guard members["type"] == nil, members["payload"] == nil else { throw Self.invalid("io_result: give either io_result or type and payload, not both") }
            return ForkReplacement(content: .ioResult(try Self.ioResult(io)))
        }
        guard case .string(let typeName)? = members["type"] else { throw Self.invalid("type: required, a message type such as task_response") }
        guard let type = MessageType(rawValue: typeName) else { throw Self.invalid("type: \(typeName) is not a message type of MCP-SPEC §2") }
        guard let payload = members["payload"] else { throw Self.invalid("payload: required, an object") }
        guard case .object = payload else { throw Self.invalid("payload: an object, not \(payload.kind)") }
        return ForkReplacement(content: .message(type: type, payload: payload.mcpValue(key: nil)))
    }

    static func ioResult(_ value: JSONValue) throws(TravelError) -> IOResult {
        guard case .object(let members) = value, members.count == 1 else {
            throw Self.invalid("io_result: an object with exactly one of value or error")
        }
        if let success = members["value"] { return .success(success.mcpValue(key: nil)) }
        guard case .object(let error)? = members["error"] else { throw Self.invalid("io_result: an object with exactly one of value or error") }
        guard case .string(let code)? = error["code"], !code.isEmpty else { throw Self.invalid("io_result.error.code: required, a string") }
        guard case .string(let message)? = error["message"] else { throw Self.invalid("io_result.error.message: required, a string") }
        var retryable = false
        if let flag = error["retryable"] {
            guard case .bool(let value) = flag else { throw Self.invalid("io_result.error.retryable: a boolean") }
            retryable = value
        }
        return .failure(TaskError(code: TaskErrorCode(rawValue: code), message: message, retryable: retryable))
    }

    /// The envelope that replaces `original`. `request` is the I/O request an I/O answer
    /// answers (needed for `io_result`).
    package func envelope(replacing original: Envelope, request: Envelope?) throws(TravelError) -> Envelope {
        switch self.content {
        case .ioResult(let result):
            guard original.sender.isIO, let request else {
                throw Self.invalid("io_result replaces an answer of the I/O gateway; the record is a \(original.type.rawValue) from \(original.sender)")
            }
            let answer = IOWire.answer(to: request, result: result, timestampMilliseconds: original.timestampMilliseconds)
            guard answer.id == original.id else { throw Self.invalid("io_result: the record is not the gateway's answer to its parent request") }
            return answer
        case .message(let type, let payload):
            // Through the hardened decoder: the recorded envelope's map with the type and payload
            // swapped, so every rule of the codec and MCP-SPEC applies, with its field path.
            let decoder = EnvelopeDecoder()
            do {
                let bytes = try EnvelopeEncoder().encode(original)
                guard case .map(var entries) = try decoder.decodeValue(bytes) else { throw Self.invalid("the recorded envelope is not a map") }
                for index in entries.indices {
                    if entries[index].key == "type" { entries[index].value = .string(type.rawValue) }
                    if entries[index].key == "payload" { entries[index].value = payload }
                }
                let writer = MsgPackWriter(initialCapacityBytes: bytes.count + 256)
                writer.write(MCPValue.map(entries))
                return try decoder.decode(writer.withBytes { [UInt8]($0) })
            } catch let error as TravelError {
                throw error
            } catch {
                throw Self.invalid("the replacement breaks a rule of the envelope: \(error)")
            }
        }
    }

    static func invalid(_ message: String) -> TravelError { TravelError(.invalidReplacement, message) }

    static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            return context.underlyingError.map { "\($0)" } ?? context.debugDescription
        }
        return "\(error)"
    }
}

/// A JSON value as the replacement file holds it. Object members are kept by name and written
/// in key order (JSON gives no order a msgpack map could keep).
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        if var items = try? decoder.unkeyedContainer() {
            var values: [JSONValue] = []
            while !items.isAtEnd { values.append(try items.decode(JSONValue.self)) }
            self = .array(values)
            return
        }
        if let members = try? decoder.container(keyedBy: AnyKey.self) {
            var values: [String: JSONValue] = [:]
            for key in members.allKeys { values[key.stringValue] = try members.decode(JSONValue.self, forKey: key) }
            self = .object(values)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let value = try? single.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? single.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? single.decode(Double.self) {
            self = .double(value)
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Ids are bytes in msgpack: `correlation_id` and `stream_id` given as UUID text become
    /// 16 bytes, `{"$binary": "HEX"}` becomes binary.
    func mcpValue(key: String?) -> MCPValue {
        switch self {
        case .null: return .null
        case .bool(let value): return .bool(value)
        case .int(let value): return .int(value)
        case .double(let value): return .double(value)
        case .string(let text):
            if key == "correlation_id" || key == "stream_id", let id = MessageID(string: text) { return .binary(id.bytes) }
            return .string(text)
        case .array(let items): return .array(items.map { $0.mcpValue(key: nil) })
        case .object(let members):
            if members.count == 1, case .string(let hex)? = members["$binary"], let bytes = Hex.decode(hex) { return .binary(bytes) }
            return .map(members.keys.sorted().map { MCPValue.MapEntry($0, members[$0]!.mcpValue(key: $0)) })
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
