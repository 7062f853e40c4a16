import CartritaEnvelope

// MARK: - BUGGIFY: rare paths made common under simulation

/// A site in a rare path of the runtime that a simulation run may force (after FoundationDB's
/// BUGGIFY). Each site is legal behaviour that production reaches only now and then (a timeout
/// that fires early, a long backoff, progress messages, a full orchestrator); forcing it often
/// is how the simulator finds the bugs hiding behind it.
public enum BuggifySite: Int, CaseIterable, Hashable, Sendable {
    /// A supervisor gives its agent 1 to 20 ms instead of the task's time limit: timeouts,
    /// retries and late answers of earlier attempts become common.
    case supervisorShortTimeout
    /// A retry or a restart waits the policy's longest backoff.
    case supervisorLongBackoff
    /// An agent reports `task_progress` before its answer; progress travels up to the client.
    case agentProgress
    /// The orchestrator answers a new task `overloaded`, as when its pending table is full.
    case orchestratorOverloaded
    /// The simulator snapshots the actor right after this delivery (driver site).
    case snapshotNow
    /// Crash recovery ignores snapshots and replays the whole log (driver site).
    case recoverWithoutSnapshots

    /// The name the simulator's report uses.
    public var name: String {
        switch self {
        case .supervisorShortTimeout: "supervisor_short_timeout"
        case .supervisorLongBackoff: "supervisor_long_backoff"
        case .agentProgress: "agent_progress"
        case .orchestratorOverloaded: "orchestrator_overloaded"
        case .snapshotNow: "snapshot_now"
        case .recoverWithoutSnapshots: "recover_without_snapshots"
        }
    }

    /// How often an enabled site fires when it is reached, per thousand.
    var perMille: UInt64 {
        switch self {
        case .supervisorShortTimeout: 100
        case .supervisorLongBackoff: 250
        case .agentProgress: 250
        case .orchestratorOverloaded: 20
        case .snapshotNow: 20
        case .recoverWithoutSnapshots: 250
        }
    }
}

/// Which BUGGIFY sites are on in one simulation run, and how often each fired.
///
/// Whether a site fires is a pure function of the enabled set, the site and the delivery's
/// recorded entropy, so replay (crash recovery inside the simulation) makes the same choices
/// from the log. Production never has one: `DeliveryContext.buggify` is nil there and every
/// site is off. The counts are an observation for the report, not state: a replaying copy
/// (`replaying()`) makes the same choices without counting them again.
///
/// Not thread-safe by design: one simulator drives it, one handler at a time.
public final class Buggify: @unchecked Sendable {
    /// Enabled sites as bits of `BuggifySite.rawValue`.
    public let enabledMask: UInt64
    /// Firings per site, indexed by `BuggifySite.rawValue`.
    public private(set) var fired: [Int]
    let counting: Bool

    /// Each site is enabled with even odds, drawn from `seed` (as FoundationDB enables each site
    /// per run): a run explores some rare paths hard rather than all of them a little.
    public convenience init(seed: UInt64) {
        var random = SplitMix64(seed: seed ^ 0x6275_6767_6966_7921)
        var mask: UInt64 = 0
        for site in BuggifySite.allCases where random.next64() % 2 == 0 { mask |= 1 << UInt64(site.rawValue) }
        self.init(enabledMask: mask)
    }

    public init(enabledMask: UInt64, counting: Bool = true) {
        self.enabledMask = enabledMask
        self.fired = Array(repeating: 0, count: BuggifySite.allCases.count)
        self.counting = counting
    }

    public func isEnabled(_ site: BuggifySite) -> Bool { self.enabledMask & (1 << UInt64(site.rawValue)) != 0 }

    /// The same choices, not counted: for replaying deliveries that were counted when they ran.
    public func replaying() -> Buggify { Buggify(enabledMask: self.enabledMask, counting: false) }

    /// Whether `site` fires for a delivery with this entropy.
    public func fires(_ site: BuggifySite, entropy: UInt64) -> Bool {
        guard self.isEnabled(site) else { return false }
        var mix = SplitMix64(seed: entropy ^ (0x4255_4747_0000 &+ UInt64(site.rawValue) &* 0x9E37_79B9_7F4A_7C15))
        guard mix.next64() % 1_000 < site.perMille else { return false }
        if self.counting { self.fired[site.rawValue] += 1 }
        return true
    }

    /// Site name and count for every enabled site, in `BuggifySite` order.
    public var report: [(String, Int)] {
        BuggifySite.allCases.filter(self.isEnabled).map { ($0.name, self.fired[$0.rawValue]) }
    }
}

extension DeliveryContext {
    /// Whether a BUGGIFY site fires in this delivery (never in production).
    public func buggify(_ site: BuggifySite) -> Bool {
        self.buggify?.fires(site, entropy: self.entropy) ?? false
    }
}
