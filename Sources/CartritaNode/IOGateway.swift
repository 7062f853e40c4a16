import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Foundation

// MARK: - The I/O gateway: the outside world, recorded

/// A service of the I/O gateway (`io.NAME@v1.0`): files, an AI provider, HTTP. It runs outside
/// the deterministic core, on the node's tasks; what it answers is logged when the agent takes
/// the answer, so replay never calls it again.
public protocol IOService: Sendable {
    /// Performs `operation`. The gateway enforces the call's timeout around it.
    func call(operation: String, arguments: MCPValue) async -> IOResult
}

extension Node {
    /// An I/O request reached the gateway: it is logged first (write-ahead, as every delivery),
    /// then performed by its service within the call's timeout, and the answer goes back to the
    /// agent like any message. A request the log already holds (a resend) is not performed again.
    func performIO(_ envelope: Envelope) {
        self.outstanding.add(1, ordering: .relaxed)
        Task {
            defer { self.outstanding.subtract(1, ordering: .releasing) }
            do throws(EventLogError) {
                let clock = self.clock.now()
                let seq = try await self.log.append(envelope, clockMilliseconds: clock, entropy: 0)
                if let tap = self.configuration.deliveryTap { tap(DeliveredRecord(seq: seq, clockMilliseconds: clock, envelope: envelope)) }
            } catch where error.code == .duplicateID {
                return
            } catch {
                self.fail(error)
                return
            }
            let result: IOResult
            if let request = IOWire.parse(envelope) {
                if let service = self.ioService(named: request.service) {
                    result = await Self.perform(request, on: service)
                } else {
                    result = .failure(TaskError(
                        code: .ioUnavailable, message: "no I/O service \(request.service) on this node", retryable: false))
                }
            } else {
                result = .failure(TaskError(code: .ioError, message: "not an I/O request: \(envelope.payload.type)", retryable: false))
            }
            self.enqueue(IOWire.answer(to: envelope, result: result, timestampMilliseconds: self.clock.now()), from: nil)
        }
    }

    /// The service's answer, or `timeout` when the call's time is up first.
    public static func perform(_ request: IOWire.Request, on service: any IOService) async -> IOResult {
        await withTaskGroup(of: IOResult.self) { group in
            group.addTask { await service.call(operation: request.operation, arguments: request.arguments) }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(request.timeoutMilliseconds) * 1_000_000)
                return .failure(TaskError(
                    code: .timeout, message: "io.\(request.service) gave no answer within \(request.timeoutMilliseconds) ms", retryable: true))
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }
}

// MARK: - The files service

/// Reads files under one root folder (`io.files`, operation `read`, argument `url`: a
/// `file://` URL or a path, taken relative to the root). Nothing outside the root is read, even
/// through a symbolic link; the content must fit in one envelope.
public struct FilesService: IOService {
    public let root: String
    /// The most bytes one read returns: the answer must stay within the codec's envelope limit.
    public let maxBytes: Int

    public init(root: String, maxBytes: Int = 512 << 10) {
        self.root = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
        self.maxBytes = maxBytes
    }

    public func call(operation: String, arguments: MCPValue) async -> IOResult {
        guard operation == "read" else { return Self.refuse("io.files has no operation \(operation); it has read") }
        guard case .string(let reference)? = arguments["url"] else { return Self.refuse("io.files read needs a url argument") }
        var limit = self.maxBytes
        if case .int(let asked)? = arguments["max_bytes"], asked > 0 { limit = min(limit, Int(clamping: asked)) }
        let path: String
        if reference.hasPrefix("file://") {
            guard let url = URL(string: reference), url.isFileURL else { return Self.refuse("\(reference) is not a file URL") }
            path = url.path
        } else if reference.contains("://") {
            return Self.refuse("io.files reads file:// URLs and paths, not \(reference)")
        } else {
            path = reference.hasPrefix("/") ? reference : self.root + "/" + reference
        }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
        guard resolved == self.root || resolved.hasPrefix(self.root + "/") else {
            return Self.refuse("\(reference) is outside the files root")
        }
        guard let handle = FileHandle(forReadingAtPath: resolved) else {
            return Self.refuse("\(reference): no such readable file")
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            return .failure(TaskError(code: .ioError, message: "\(reference): \(error)", retryable: true))
        }
        guard data.count <= limit else { return Self.refuse("\(reference) is larger than \(limit) bytes") }
        return .success(.map([MCPValue.MapEntry("content", .binary([UInt8](data))), MCPValue.MapEntry("size_bytes", .int(Int64(data.count)))]))
    }

    static func refuse(_ message: String) -> IOResult {
        .failure(TaskError(code: .ioError, message: message, retryable: false))
    }
}
