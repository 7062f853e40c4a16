import CartritaEnvelope
import CartritaRuntime
import XCTest

final class SupervisionTests: XCTestCase {
    let a = Address("agent.a@v1.0")
    let b = Address("agent.b@v1.0")
    let c = Address("agent.c@v1.0")

    func restarted(_ decision: SupervisionState.Decision) -> [Address] {
        guard case .restart(let list) = decision else { return [] }
        return list.map(\.child)
    }

    func testEachStrategyRestartsTheRightChildren() {
        let children = [self.a, self.b, self.c]
        var oneForOne = SupervisionState(policy: .init(strategy: .oneForOne), children: children)
        XCTAssertEqual(self.restarted(oneForOne.childCrashed(self.b, atMilliseconds: 0)), [self.b])
        var oneForAll = SupervisionState(policy: .init(strategy: .oneForAll), children: children)
        XCTAssertEqual(self.restarted(oneForAll.childCrashed(self.b, atMilliseconds: 0)), [self.a, self.b, self.c])
        var restForOne = SupervisionState(policy: .init(strategy: .restForOne), children: children)
        XCTAssertEqual(self.restarted(restForOne.childCrashed(self.b, atMilliseconds: 0)), [self.b, self.c])
        XCTAssertEqual(self.restarted(restForOne.childCrashed(self.c, atMilliseconds: 1)), [self.c])
    }

    func testIntensityWithinThePeriodEscalatesAndOldRestartsAgeOut() {
        var state = SupervisionState(policy: .init(intensity: 3, periodMilliseconds: 1_000), children: [self.a])
        // Three restarts within a second are allowed...
        for time in [0, 100, 200] as [Int64] {
            XCTAssertEqual(self.restarted(state.childCrashed(self.a, atMilliseconds: time)), [self.a])
        }
        // ...and after the first has aged out (t > 0 + 1000), one more fits.
        XCTAssertEqual(self.restarted(state.childCrashed(self.a, atMilliseconds: 1_050)), [self.a])
        // Restarts at 100, 200 and 1050 are all within (60, 1060]: a fourth there escalates
        // (OTP: more than MaxR restarts within MaxT), and escalation sticks.
        guard case .escalate = state.childCrashed(self.a, atMilliseconds: 1_060) else { return XCTFail("should escalate") }
        XCTAssertTrue(state.escalated)
        guard case .escalate = state.childCrashed(self.a, atMilliseconds: 90_000) else { return XCTFail("stays escalated") }
    }

    func testIntensityZeroEscalatesOnTheFirstCrash() {
        var state = SupervisionState(policy: .init(intensity: 0), children: [self.a])
        guard case .escalate = state.childCrashed(self.a, atMilliseconds: 0) else { return XCTFail("should escalate") }
    }

    func testBackoffDoublesPerConsecutiveCrashUpToTheCapAndResetsOnSuccess() {
        var state = SupervisionState(
            policy: .init(intensity: 100, periodMilliseconds: 1, backoffBaseMilliseconds: 10, backoffMaxMilliseconds: 100),
            children: [self.a, self.b])
        var delays: [Int64] = []
        for time in 0..<6 {
            guard case .restart(let list) = state.childCrashed(self.a, atMilliseconds: Int64(time * 10)) else { return XCTFail() }
            delays.append(list[0].afterMilliseconds)
        }
        XCTAssertEqual(delays, [10, 20, 40, 80, 100, 100])
        state.childSucceeded(self.a)
        guard case .restart(let again) = state.childCrashed(self.a, atMilliseconds: 1_000) else { return XCTFail() }
        XCTAssertEqual(again[0].afterMilliseconds, 10)
    }

    func testACrashOfAStrangerRestartsNothing() {
        var state = SupervisionState(policy: .init(), children: [self.a])
        XCTAssertEqual(state.childCrashed(self.b, atMilliseconds: 0), .restart([]))
        XCTAssertTrue(state.restartTimes.isEmpty)
    }
}

final class BudgetTests: XCTestCase {
    func testGrantsReserveAndDenialsSayWhy() {
        var budget = Budget(maxConcurrentTasks: 2, tokenBudget: 1_000, costBudgetUSD: 1.0)
        XCTAssertNoThrow(try budget.request(ResourceAmounts(tokens: 600, costUSD: 0.5, concurrencySlots: 1)).get())
        XCTAssertEqual(budget.tokensAvailable, 400)

        guard case .failure(let tokens) = budget.request(ResourceAmounts(tokens: 500)) else { return XCTFail() }
        XCTAssertEqual(tokens.code, .budgetExceeded)
        XCTAssertTrue(tokens.message.contains("400 left"), tokens.message)

        guard case .failure(let cost) = budget.request(ResourceAmounts(costUSD: 0.6)) else { return XCTFail() }
        XCTAssertEqual(cost.code, .budgetExceeded)

        XCTAssertNoThrow(try budget.request(ResourceAmounts(concurrencySlots: 1)).get())
        guard case .failure(let slots) = budget.request(ResourceAmounts(concurrencySlots: 1)) else { return XCTFail() }
        XCTAssertEqual(slots.code.rawValue, "concurrency_limit")
        XCTAssertTrue(slots.retryable, "a slot frees up later")
        XCTAssertEqual(budget.slotsInUse, 2, "a denial reserves nothing")
    }

    func testSettlingSpendsWhatWasUsedAndNeverMoreThanGranted() {
        var budget = Budget(maxConcurrentTasks: 10, tokenBudget: 1_000, costBudgetUSD: 1.0)
        let grant = try! budget.request(ResourceAmounts(tokens: 500, costUSD: 0.4, concurrencySlots: 1)).get()
        budget.settle(granted: grant, usedTokens: 300, usedCostUSD: 0.1)
        XCTAssertEqual(budget.tokensSpent, 300)
        XCTAssertEqual(budget.tokensAvailable, 700)
        XCTAssertEqual(budget.slotsInUse, 0)
        let second = try! budget.request(ResourceAmounts(tokens: 100, costUSD: 0.1)).get()
        budget.settle(granted: second, usedTokens: 9_999, usedCostUSD: 5)
        XCTAssertEqual(budget.tokensSpent, 400, "an agent reporting more than its grant is capped")
        XCTAssertEqual(budget.costSpentUSD, 0.2, accuracy: 1e-9)
    }

    /// Random requests and settlements never push spending past the budget.
    func testNeverOverspentUnderRandomTraffic() {
        var generator = SplitMix64(seed: 77)
        var budget = Budget(maxConcurrentTasks: 5, tokenBudget: 50_000, costBudgetUSD: 10)
        var held: [ResourceAmounts] = []
        for _ in 0..<10_000 {
            if generator.next64() % 2 == 0 || held.isEmpty {
                let ask = ResourceAmounts(tokens: Int64(generator.next64() % 3_000), costUSD: Double(generator.next64() % 100) / 100, concurrencySlots: 1)
                if case .success(let grant) = budget.request(ask) { held.append(grant) }
            } else {
                let grant = held.removeFirst()
                budget.settle(granted: grant, usedTokens: Int64(generator.next64() % 4_000), usedCostUSD: Double(generator.next64() % 200) / 100)
            }
            XCTAssertLessThanOrEqual(budget.tokensSpent + budget.tokensReserved, budget.tokenBudget)
            XCTAssertLessThanOrEqual(budget.costSpentUSD + budget.costReservedUSD, budget.costBudgetUSD + 1e-9)
            XCTAssertLessThanOrEqual(budget.slotsInUse, budget.maxConcurrentTasks)
        }
    }
}
