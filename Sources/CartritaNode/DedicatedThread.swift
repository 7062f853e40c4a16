import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A thread of its own for one actor's drains, at a lower nice value than the rest of the
/// process (see `NodeConfiguration.dedicatedThreadActors`).
///
/// Why: on a busy 2-core machine the orchestrator's drains otherwise wait for one of
/// dispatch's pool threads after every commit, and the pool threads are preempted by tier-2
/// work and the process's neighbours in the middle of a batch; every request in that batch
/// waits with it. A thread that only this actor uses, at a higher scheduling weight, is woken
/// directly by the writer's resume and keeps its core while it routes.
///
/// It is a `TaskExecutor`: a drain task prefers it, and a default actor runs its jobs on the
/// executor its task prefers, so the actor's isolation is still the actor's own. Jobs of other
/// tasks that call the actor keep running where they are.
///
/// The thread ends after `idleExitSeconds` (default 1) without work and starts again on the next job, so a
/// node that stops (tests open hundreds) leaves no thread behind and a late job never waits
/// for a thread that is gone.
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    let name: String
    /// The thread's nice value (lower runs first); not applied when the process may not set it.
    let niceValue: Int32
    let idleExitSeconds: Double

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var threadRunning = false

    init(name: String, niceValue: Int32, idleExitSeconds: Double = 1.0) {
        self.name = name
        self.niceValue = niceValue
        self.idleExitSeconds = idleExitSeconds
    }

    /// Whether the thread is up (it ends when idle).
    var isThreadRunning: Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.threadRunning
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.condition.lock()
        self.jobs.append(job)
        let start = !self.threadRunning
        if start { self.threadRunning = true } else { self.condition.signal() }
        self.condition.unlock()
        if start {
            let thread = Thread { [self] in self.run() }
            thread.name = self.name
            thread.start()
        }
    }

    private func run() {
        #if canImport(Glibc)
            // On Linux a nice value belongs to a thread, and `who` 0 is the calling one: this
            // thread only. Failing (no CAP_SYS_NICE for a negative value) leaves it at the
            // process's nice, which is still correct, only slower.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, self.niceValue)
        #endif
        Thread.current.name = self.name
        let executor = self.asUnownedTaskExecutor()
        var running: [UnownedJob] = []
        while true {
            self.condition.lock()
            if self.jobs.isEmpty {
                _ = self.condition.wait(until: Date(timeIntervalSinceNow: self.idleExitSeconds))
                if self.jobs.isEmpty {
                    self.threadRunning = false
                    self.condition.unlock()
                    return
                }
            }
            swap(&running, &self.jobs)
            self.condition.unlock()
            for job in running { job.runSynchronously(on: executor) }
            running.removeAll(keepingCapacity: true)
        }
    }
}
