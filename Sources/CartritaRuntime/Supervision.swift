import CartritaEnvelope

// MARK: - Supervision (Erlang/OTP semantics)

/// Which children restart when one crashes.
public enum SupervisionStrategy: String, CaseIterable, Hashable, Sendable {
    /// Only the crashed child.
    case oneForOne = "one_for_one"
    /// Every child: they depend on each other.
    case oneForAll = "one_for_all"
    /// The crashed child and every child started after it: later children depend on earlier ones.
    case restForOne = "rest_for_one"
}

/// A supervisor's restart rules: at most `intensity` restarts within `periodMilliseconds`, else
/// give up and escalate to the orchestrator (OTP's MaxR/MaxT). Restarts back off exponentially
/// per child, on the recorded clock (a restart is a timer, never a sleep).
public struct SupervisionPolicy: Hashable, Sendable {
    public var strategy: SupervisionStrategy
    public var intensity: Int
    public var periodMilliseconds: Int64
    public var backoffBaseMilliseconds: Int64
    public var backoffMaxMilliseconds: Int64

    public init(
        strategy: SupervisionStrategy = .oneForOne, intensity: Int = 3, periodMilliseconds: Int64 = 5_000,
        backoffBaseMilliseconds: Int64 = 10, backoffMaxMilliseconds: Int64 = 5_000
    ) {
        precondition(intensity >= 0 && periodMilliseconds > 0 && backoffBaseMilliseconds >= 0 && backoffMaxMilliseconds >= backoffBaseMilliseconds)
        self.strategy = strategy
        self.intensity = intensity
        self.periodMilliseconds = periodMilliseconds
        self.backoffBaseMilliseconds = backoffBaseMilliseconds
        self.backoffMaxMilliseconds = backoffMaxMilliseconds
    }
}

/// The restart state machine of one supervisor: children in start order, recent restart times,
/// and per-child consecutive crash counts for the backoff. Pure: the clock comes in with each call.
public struct SupervisionState: Hashable, Sendable {
    public enum Decision: Hashable, Sendable {
        /// Restart these children (in start order), each after its delay.
        case restart([(child: Address, afterMilliseconds: Int64)])
        /// Intensity exceeded: stop every child and tell the orchestrator.
        case escalate(reason: String)

        public static func == (lhs: Decision, rhs: Decision) -> Bool {
            switch (lhs, rhs) {
            case (.restart(let a), .restart(let b)):
                a.count == b.count && zip(a, b).allSatisfy { $0.child == $1.child && $0.afterMilliseconds == $1.afterMilliseconds }
            case (.escalate(let a), .escalate(let b)): a == b
            default: false
            }
        }

        public func hash(into hasher: inout Hasher) {
            switch self {
            case .restart(let list):
                hasher.combine(0)
                for item in list {
                    hasher.combine(item.child)
                    hasher.combine(item.afterMilliseconds)
                }
            case .escalate(let reason):
                hasher.combine(1)
                hasher.combine(reason)
            }
        }
    }

    public let policy: SupervisionPolicy
    /// Children in start order (rest_for_one needs it).
    public internal(set) var children: [Address]
    /// Clock readings of the restarts within the current period, oldest first.
    public internal(set) var restartTimes: [Int64] = []
    /// Crashes in a row per child (index-aligned with `children`); a success resets it.
    public internal(set) var consecutiveCrashes: [Int]
    public internal(set) var escalated = false

    public init(policy: SupervisionPolicy, children: [Address]) {
        self.policy = policy
        self.children = children
        self.consecutiveCrashes = Array(repeating: 0, count: children.count)
    }

    /// A child crashed at `nowMilliseconds`. Returns what to restart, or to escalate once the
    /// intensity is exceeded; after escalating, every later crash escalates too.
    public mutating func childCrashed(_ child: Address, atMilliseconds nowMilliseconds: Int64) -> Decision {
        guard let index = self.children.firstIndex(of: child) else {
            return .restart([])  // not ours: nothing to restart
        }
        guard !self.escalated else { return .escalate(reason: "supervision already escalated") }
        // Restarts older than the period no longer count.
        let windowStart = nowMilliseconds - self.policy.periodMilliseconds
        self.restartTimes.removeAll { $0 <= windowStart }
        guard self.restartTimes.count < self.policy.intensity else {
            self.escalated = true
            return .escalate(
                reason: "\(self.restartTimes.count + 1) crashes within \(self.policy.periodMilliseconds) ms exceed the intensity of \(self.policy.intensity); last: \(child)")
        }
        self.restartTimes.append(nowMilliseconds)
        self.consecutiveCrashes[index] += 1

        let affected: Range<Int>
        switch self.policy.strategy {
        case .oneForOne: affected = index..<(index + 1)
        case .oneForAll: affected = 0..<self.children.count
        case .restForOne: affected = index..<self.children.count
        }
        return .restart(affected.map { position in
            (self.children[position], self.backoff(crashes: self.consecutiveCrashes[position]))
        })
    }

    /// The cool-down after an escalation is over: the supervisor starts again with a clean slate
    /// (as an OTP parent restarts a supervisor that gave up), and every child with it.
    public mutating func restartAfterEscalation() {
        self.escalated = false
        self.restartTimes.removeAll()
        for index in self.consecutiveCrashes.indices { self.consecutiveCrashes[index] = 0 }
    }

    /// A child answered successfully: its backoff starts over.
    public mutating func childSucceeded(_ child: Address) {
        if let index = self.children.firstIndex(of: child) { self.consecutiveCrashes[index] = 0 }
    }

    /// `base × 2^(crashes − 1)`, capped; 0 crashes (restarted alongside another) restarts at once.
    func backoff(crashes: Int) -> Int64 {
        guard crashes > 0, self.policy.backoffBaseMilliseconds > 0 else { return 0 }
        var delay = self.policy.backoffBaseMilliseconds
        for _ in 1..<crashes {
            delay *= 2
            if delay >= self.policy.backoffMaxMilliseconds { return self.policy.backoffMaxMilliseconds }
        }
        return min(delay, self.policy.backoffMaxMilliseconds)
    }
}

// MARK: - Budgets

/// A supervisor's budgets: concurrency slots held by running tasks, and token and cost budgets
/// that grants reserve and answers settle. A request that does not fit is denied with a reason;
/// nothing is ever overspent.
public struct Budget: Hashable, Sendable {
    public var maxConcurrentTasks: Int64
    public var tokenBudget: Int64
    public var costBudgetUSD: Double

    public internal(set) var slotsInUse: Int64 = 0
    public internal(set) var tokensReserved: Int64 = 0
    public internal(set) var tokensSpent: Int64 = 0
    public internal(set) var costReservedUSD: Double = 0
    public internal(set) var costSpentUSD: Double = 0

    public init(maxConcurrentTasks: Int64, tokenBudget: Int64, costBudgetUSD: Double) {
        self.maxConcurrentTasks = maxConcurrentTasks
        self.tokenBudget = tokenBudget
        self.costBudgetUSD = costBudgetUSD
    }

    public var tokensAvailable: Int64 { self.tokenBudget - self.tokensSpent - self.tokensReserved }
    public var costAvailableUSD: Double { self.costBudgetUSD - self.costSpentUSD - self.costReservedUSD }

    /// Grants all of `amounts` or nothing. A deny carries the code and the reason.
    public mutating func request(_ amounts: ResourceAmounts) -> Result<ResourceAmounts, TaskError> {
        let slots = amounts.concurrencySlots ?? 0
        let tokens = amounts.tokens ?? 0
        let cost = amounts.costUSD ?? 0
        if slots > 0 && self.slotsInUse + slots > self.maxConcurrentTasks {
            return .failure(TaskError(
                code: TaskErrorCode(rawValue: "concurrency_limit"),
                message: "\(self.slotsInUse) of \(self.maxConcurrentTasks) concurrency slots are in use; \(slots) more asked", retryable: true))
        }
        if tokens > self.tokensAvailable {
            return .failure(TaskError(
                code: .budgetExceeded, message: "\(tokens) tokens asked, \(self.tokensAvailable) left of \(self.tokenBudget)", retryable: false))
        }
        if cost > self.costAvailableUSD + 1e-12 {
            return .failure(TaskError(
                code: .budgetExceeded,
                message: "$\(cost) asked, $\(max(0, self.costAvailableUSD)) left of $\(self.costBudgetUSD)", retryable: false))
        }
        self.slotsInUse += slots
        self.tokensReserved += tokens
        self.costReservedUSD += cost
        return .success(amounts)
    }

    /// Settles a grant: the reservation is released and what was really used is spent.
    /// Spending is capped at what was reserved, so a misreporting agent cannot overspend.
    public mutating func settle(granted: ResourceAmounts, usedTokens: Int64, usedCostUSD: Double) {
        let reservedTokens = granted.tokens ?? 0
        let reservedCost = granted.costUSD ?? 0
        self.slotsInUse -= granted.concurrencySlots ?? 0
        self.tokensReserved -= reservedTokens
        self.costReservedUSD -= reservedCost
        self.tokensSpent += min(max(usedTokens, 0), reservedTokens)
        self.costSpentUSD += min(max(usedCostUSD, 0), reservedCost)
        precondition(self.slotsInUse >= 0 && self.tokensReserved >= 0, "settled more than was granted")
    }
}
