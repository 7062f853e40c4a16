import Synchronization

/// At most `capacity` tasks in flight for one producer: `acquire` waits (without spinning) until
/// an acknowledgement `release`s a place. One producer task waits at a time.
public final class TaskWindow: Sendable {
    struct State {
        var available: Int
        var waiter: CheckedContinuation<Void, Never>?
    }

    let state: Mutex<State>

    public init(capacity: Int) {
        precondition(capacity > 0, "a window holds at least one task")
        self.state = Mutex(State(available: capacity))
    }

    public func acquire() async {
        let taken = self.state.withLock { state -> Bool in
            guard state.available > 0 else { return false }
            state.available -= 1
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                precondition(state.waiter == nil, "one producer waits at a time")
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    public func release() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil  // the place goes straight to the waiter
                return waiter
            }
            state.available += 1
            return nil
        }
        waiter?.resume()
    }
}
