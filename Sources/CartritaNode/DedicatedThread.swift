import CartritaLog
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
/// The log's writer may run its jobs too (`answerHook`,
/// `NodeConfiguration.writerResumesDedicatedActors`): the writer resumes the actor when its
/// batch is committed, and then, instead of waking this thread and waiting for the kernel to
/// schedule it (tens of microseconds at the median, up to a millisecond at p99 on a busy 2-core
/// machine), runs the actor's next steps itself, on a thread that is awake already. The actor's handling of a batch is short (a few microseconds a
/// message) next to a commit, and the writer's next batch gathers appends meanwhile.
///
/// The thread ends after `idleExitSeconds` (default 1) without work and starts again on the
/// next job, so a node that stops (tests open hundreds) leaves no thread behind and a late job
/// never waits for a thread that is gone.
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    let name: String
    /// The thread's nice value (lower runs first); not applied when the process may not set it.
    let niceValue: Int32
    let idleExitSeconds: Double

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var threadRunning = false
    /// The writer's thread is answering and runs what is queued when it is done: an enqueue
    /// need not wake this thread.
    private var writerWillRun = false
    private var jobsRunByWriterCount = 0

    init(name: String, niceValue: Int32, idleExitSeconds: Double = 1.0) {
        self.name = name
        self.niceValue = niceValue
        self.idleExitSeconds = idleExitSeconds
    }

    /// Jobs the log's writer ran (`answerHook`), for tests.
    var jobsRunByWriter: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.jobsRunByWriterCount
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
        var start = false
        if self.writerWillRun {
            // The writer runs it in a moment (`answerHook`).
        } else if !self.threadRunning {
            self.threadRunning = true
            start = true
        } else {
            self.condition.signal()
        }
        self.condition.unlock()
        if start { self.startThread() }
    }

    private func startThread() {
        let thread = Thread { [self] in self.run() }
        thread.name = self.name
        thread.start()
    }

    /// For `EventLog.addAnswerHook`: while the writer's thread answers, jobs wait for it; after,
    /// it runs them. The jobs it runs are this actor's steps up to their next wait (for the log,
    /// usually): they never wait for the writer synchronously.
    var answerHook: EventLog.AnswerHook {
        EventLog.AnswerHook(
            willAnswer: { [weak self] in
                guard let self else { return }
                self.condition.lock()
                self.writerWillRun = true
                self.condition.unlock()
            },
            didAnswer: { [weak self] queuedRecords in self?.runQueuedOnWriter(queuedRecords: queuedRecords) })
    }

    /// Most rounds the writer runs: a job it runs usually queues the next one at once (the hop
    /// back onto the actor after the log's answer), which it takes too, and the round after
    /// finds nothing. The bound keeps a busy actor from holding the writer's thread.
    static let maxWriterRounds = 4
    /// With more records than this waiting for the writer's next commit, the writer leaves the
    /// actor to its own thread: under a backlog the writer is the bottleneck, and a large batch
    /// handled on it (hundreds of messages at a few microseconds each) would hold every other
    /// actor's commit back. 64 rather than 256: at 1024 tasks in flight (`bench runtime`) the
    /// writer was the only runnable thread about 30% of the time, and leaving the orchestrator
    /// to its thread sooner gave 6% more tasks/s (5 of 6 alternating pairs), while `bench serve`
    /// at 100 clients, whose commits rarely have that many waiting, kept its routing overhead.
    static let maxWriterBacklogRecords = 64

    private func runQueuedOnWriter(queuedRecords: Int) {
        let executor = self.asUnownedTaskExecutor()
        let rounds = queuedRecords > Self.maxWriterBacklogRecords ? 0 : Self.maxWriterRounds
        for _ in 0..<rounds {
            self.condition.lock()
            let queued = self.jobs
            self.jobs = []
            if queued.isEmpty {
                self.writerWillRun = false
                self.condition.unlock()
                return
            }
            self.jobsRunByWriterCount += queued.count
            self.condition.unlock()
            for job in queued { job.runSynchronously(on: executor) }
        }
        // Still busy, or the writer is behind: the actor's own thread goes on.
        self.condition.lock()
        self.writerWillRun = false
        var start = false
        if !self.jobs.isEmpty {
            if self.threadRunning {
                self.condition.signal()
            } else {
                self.threadRunning = true
                start = true
            }
        }
        self.condition.unlock()
        if start { self.startThread() }
    }

    private func run() {
        #if canImport(Glibc)
            // On Linux a nice value belongs to a thread, and `who` 0 is the calling one: this
            // thread only. Failing (no CAP_SYS_NICE for a negative value) leaves it at the
            // process's nice, which is still correct, only slower.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, self.niceValue)
        #endif
        // For top and perf until the first job: Swift's runtime renames a thread after the
        // priority of the job it runs.
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
