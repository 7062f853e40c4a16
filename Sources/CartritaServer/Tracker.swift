import CartritaEnvelope
import Synchronization

// MARK: - Tasks this process submitted and has not seen answered

/// The tasks this server submitted whose terminal answer it has not seen, and the requests
/// waiting for them. The node calls `settled` when the orchestrator makes a client's answer
/// (everything it depends on is committed) and `answered` once the answer's own record is
/// committed; `wait` returns at the first, or at its timeout.
///
/// Bounded: at most `maxWaiting` requests wait at once (past it `register` refuses, and the API
/// answers 429), at most `maxTracked` tasks are tracked (an async task past it is still submitted,
/// only not tracked: its status then comes from the log alone).
final class Tracker: Sendable {
    final class Wait: Sendable {
        enum State {
            case waiting(CheckedContinuation<Envelope?, Never>?)
            case done(Envelope?)
        }

        let state = Mutex<State>(.waiting(nil))

        /// Ends the wait with `answer` (nil: timed out or handed back). Only the first call counts.
        func finish(_ answer: Envelope?) {
            let continuation: CheckedContinuation<Envelope?, Never>? = self.state.withLock { state in
                guard case .waiting(let continuation) = state else { return nil }
                state = .done(answer)
                return continuation
            }
            continuation?.resume(returning: answer)
        }

        /// The answer, or nil after `timeoutMilliseconds`.
        func value(timeoutMilliseconds: Int64) async -> Envelope? {
            let timer = Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(timeoutMilliseconds))
                self?.finish(nil)
            }
            defer { timer.cancel() }
            return await withCheckedContinuation { continuation in
                let ready: Envelope?? = self.state.withLock { state in
                    switch state {
                    case .done(let answer): return .some(answer)
                    case .waiting:
                        state = .waiting(continuation)
                        return .none
                    }
                }
                if case .some(let answer) = ready { continuation.resume(returning: answer) }
            }
        }
    }

    struct Entry {
        var user: String
        var createdMilliseconds: Int64
        var waits: [Wait] = []
        /// The answer, settled but not committed yet (see `settled`).
        var settled: Envelope?
    }

    struct State {
        var tasks: [MessageID: Entry] = [:]
        var waiting = 0
    }

    let state = Mutex(State())
    let maxWaiting: Int
    let maxTracked: Int

    init(maxWaiting: Int, maxTracked: Int) {
        self.maxWaiting = maxWaiting
        self.maxTracked = maxTracked
    }

    enum Registration {
        case registered(Wait?)
        case tooManyWaiting
    }

    /// Tracks task `id` (before it is sent, so its answer cannot slip past), with a wait if `wait`.
    func register(_ id: MessageID, user: String, nowMilliseconds: Int64, wait: Bool) -> Registration {
        self.state.withLock { state in
            if wait && state.waiting >= self.maxWaiting { return .tooManyWaiting }
            let handle = wait ? Wait() : nil
            if var entry = state.tasks[id] {
                if let handle {
                    if let answer = entry.settled { handle.finish(answer) } else { entry.waits.append(handle) }
                }
                state.tasks[id] = entry
            } else if state.tasks.count < self.maxTracked || handle != nil {
                state.tasks[id] = Entry(user: user, createdMilliseconds: nowMilliseconds, waits: handle.map { [$0] } ?? [])
            }
            if handle != nil { state.waiting += 1 }
            return .registered(handle)
        }
    }

    /// A wait that ended (answered or timed out) leaves the count of waiting requests.
    func release(_ wait: Wait, of id: MessageID) {
        self.state.withLock { state in
            state.waiting -= 1
            if var entry = state.tasks[id] {
                entry.waits.removeAll { $0 === wait }
                state.tasks[id] = entry
            }
        }
    }

    /// The terminal answer of task `id` is settled: made by the orchestrator from committed
    /// records, its own record not committed yet (`NodeConfiguration.answerTap`). The waits end
    /// now; the entry stays, holding the answer, until `answered`, so that a read of the task in
    /// between sees the answer its client was given.
    func settled(_ id: MessageID, _ answer: Envelope) {
        let waits: [Wait] = self.state.withLock { state in
            guard var entry = state.tasks[id] else { return [] }
            entry.settled = answer
            let waits = entry.waits
            entry.waits = []
            state.tasks[id] = entry
            return waits
        }
        for wait in waits { wait.finish(answer) }
    }

    /// The terminal answer of task `id` is in the log.
    func answered(_ id: MessageID, _ answer: Envelope) {
        let entry = self.state.withLock { $0.tasks.removeValue(forKey: id) }
        for wait in entry?.waits ?? [] { wait.finish(answer) }
    }

    /// Whether this process submitted `id` and has not seen its answer (it may not be logged yet).
    func tracked(_ id: MessageID) -> Entry? {
        self.state.withLock { $0.tasks[id] }
    }

    var waitingCount: Int { self.state.withLock { $0.waiting } }
    var trackedCount: Int { self.state.withLock { $0.tasks.count } }

    /// Ends every wait now (drain deadline): those requests are answered with their task id.
    func handBackAll() {
        let waits = self.state.withLock { state in state.tasks.values.flatMap(\.waits) }
        for wait in waits { wait.finish(nil) }
    }
}
