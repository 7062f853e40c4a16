#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain pthread mutex on heap storage (a pthread_mutex_t must never move in memory).
final class PThreadMutex: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        self.mutex = .allocate(capacity: 1)
        let rc = pthread_mutex_init(self.mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body()
    }
}

/// A value that identifies the calling OS thread, for the gate's bookkeeping only.
func currentThreadID() -> UInt {
    #if canImport(Darwin)
    return UInt(bitPattern: pthread_self())
    #else
    return UInt(pthread_self())
    #endif
}

/// Shared/exclusive gate between transactions and map resizing.
///
/// Why not `pthread_rwlock_t`: a read transaction opened with MDB_NOTLS may end on another thread than the
/// one that began it (Swift concurrency hops threads), and unlocking a rwlock from a non-owner thread is
/// undefined behaviour. This gate is a counter under a mutex, so any thread may release a share.
///
/// Policy:
/// - Every transaction holds a share for its whole lifetime (LMDB: no transaction may be active in the
///   process while `mdb_env_set_mapsize` runs, and the map is unmapped/remapped by that call).
/// - Exclusive holders wait for all shares to drain; while one waits, new shares wait too (no starvation of
///   map growth) *unless* the calling thread already holds a share, because waiting there would deadlock.
/// - Asking for exclusive access from a thread that holds a share throws instead of deadlocking.
final class TransactionGate: @unchecked Sendable {
    private let lock = PThreadMutex()
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var sharesByThread: [UInt: Int] = [:]
    private var sharesTotal = 0
    private var exclusiveHeld = false
    private var exclusiveWaiters = 0

    init() {
        self.condition = .allocate(capacity: 1)
        let rc = pthread_cond_init(self.condition, nil)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
    }

    deinit {
        pthread_cond_destroy(self.condition)
        self.condition.deallocate()
    }

    /// Takes a share; returns the owner token to hand back to `releaseShared`.
    func acquireShared() -> UInt {
        let me = currentThreadID()
        self.lock.withLock {
            while self.exclusiveHeld || (self.exclusiveWaiters > 0 && self.sharesByThread[me] == nil) {
                pthread_cond_wait(self.condition, self.lock.mutex)
            }
            self.sharesByThread[me, default: 0] += 1
            self.sharesTotal += 1
        }
        return me
    }

    func releaseShared(_ owner: UInt) {
        self.lock.withLock {
            let remaining = (self.sharesByThread[owner] ?? 1) - 1
            self.sharesByThread[owner] = remaining > 0 ? remaining : nil
            self.sharesTotal -= 1
            if self.sharesTotal == 0 {
                pthread_cond_broadcast(self.condition)
            }
        }
    }

    func withShared<R>(_ body: () throws -> R) rethrows -> R {
        let owner = self.acquireShared()
        defer { self.releaseShared(owner) }
        return try body()
    }

    /// Runs `body` while no transaction of this process is active.
    func withExclusive<R>(operation: String, _ body: () throws -> R) throws -> R {
        let me = currentThreadID()
        try self.lock.withLock {
            if self.sharesByThread[me] != nil {
                throw LMDBError(
                    code: .transactionActiveOnThisThread, returnCode: EDEADLK, operation: operation,
                    message: "this thread holds an LMDB transaction; end it before resizing or closing")
            }
            self.exclusiveWaiters += 1
            while self.exclusiveHeld || self.sharesTotal > 0 {
                pthread_cond_wait(self.condition, self.lock.mutex)
            }
            self.exclusiveWaiters -= 1
            self.exclusiveHeld = true
        }
        defer {
            self.lock.withLock {
                self.exclusiveHeld = false
                pthread_cond_broadcast(self.condition)
            }
        }
        return try body()
    }
}
