import Foundation
import Testing
@testable import TealCore

/// Drives a `RolloutMachine` with a fake clock: every event carries an instant the test chooses.
struct ReleaseScript {
    var machine: RolloutMachine
    let epoch = ContinuousClock.now
    var now: ContinuousClock.Instant

    static let defaultSteps: [PlanStep] = [PlanStep(split: "6/0"), PlanStep(split: "2/4"), PlanStep(split: "0/6")]

    init(steps: [PlanStep] = ReleaseScript.defaultSteps, hold: Duration = .seconds(30),
         smoke: [SmokeRequest] = [SmokeRequest(path: "/healthz")], rollback: RollbackPolicy = RollbackPolicy(),
         onNoTraffic: NoTrafficPolicy = .ignore, hooks: ReleaseHooks = ReleaseHooks()) {
        var policy = RolloutPolicy(steps: steps)
        policy.hooks = hooks
        policy.hold = hold
        policy.smoke = smoke
        policy.rollback = rollback
        policy.onNoTraffic = onNoTraffic
        let green = PoolSpec(version: "2.0", instances: [InstanceAddress(host: "127.0.0.1", port: 9201)])
        machine = RolloutMachine(spec: ReleaseSpec(route: "shop", green: green, policy: policy))
        now = epoch
    }

    mutating func send(_ event: RolloutMachine.Event, after delay: Duration = .zero) throws(RolloutMachine.Refusal) -> [RolloutMachine.Action] {
        now = now + delay
        return try machine.handle(event, at: now)
    }

    /// Sends `hookFinished` for the pending step hook (no hook configured: it passes at once).
    mutating func finishHook(after delay: Duration = .zero) throws -> [RolloutMachine.Action] {
        try send(.hookFinished(step: #require(machine.hookPending), failure: nil), after: delay)
    }

    /// Starts the release, passes the smoke gate if one comes, finishes the first hook.
    mutating func startAndReachFirstStep() throws {
        _ = try send(.start)
        if case .smokeTesting = machine.state {
            _ = try send(.smokeResults([SmokeOutcome(instance: InstanceAddress(host: "127.0.0.1", port: 9201), request: "GET /healthz", failure: nil)]))
        }
        _ = try finishHook()
    }
}

extension Split: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = Split(parsing: value)! }
}

/// Statistics of `requests` requests with `errors` 5xx, all fast.
func traffic(_ requests: UInt64, errors: UInt64 = 0, latency: UInt64 = 1_000_000) -> PoolStatistics {
    var stats = PoolStatistics()
    for index in 0..<requests {
        stats.record(index < errors ? .response(status: 500) : .response(status: 200), latencyNanoseconds: latency)
    }
    return stats
}

@Suite("Rollout state machine")
struct RolloutMachineTests {
    @Test("a clean release walks every step after its hold and is promoted after the drain")
    func happyPath() throws {
        var script = ReleaseScript()
        var actions = try script.send(.start)
        #expect(script.machine.state == .shifting(step: 0, since: script.now))  // 6/0 needs no smoke yet
        #expect(actions.contains(.runHook(event: "step", step: 0, split: "6/0")))
        actions = try script.finishHook()
        #expect(actions.contains(.setSplit("6/0")))
        actions = try script.send(.tick, after: .seconds(29))
        #expect(script.machine.currentStep == 0)
        actions = try script.send(.tick, after: .seconds(1))
        // Step 2 gives green traffic: smoke gate first, green still without a share.
        guard case .smokeTesting = script.machine.state else { Issue.record("expected smoke testing, got \(script.machine.state)"); return }
        #expect(!actions.contains { if case .setSplit = $0 { true } else { false } })
        #expect(actions.contains(.runSmoke([SmokeRequest(path: "/healthz")], instances: [InstanceAddress(host: "127.0.0.1", port: 9201)])))
        actions = try script.send(.smokeResults([SmokeOutcome(instance: InstanceAddress(host: "127.0.0.1", port: 9201), request: "GET /healthz", failure: nil)]))
        #expect(script.machine.currentStep == 1)
        actions = try script.finishHook()
        #expect(actions.contains(.setSplit("2/4")))
        _ = try script.send(.statistics(green: traffic(400), blue: traffic(200)), after: .seconds(10))
        actions = try script.send(.tick, after: .seconds(20))
        #expect(script.machine.currentStep == 2)
        actions = try script.finishHook()
        #expect(actions.contains(.setSplit("0/6")))
        actions = try script.send(.tick, after: .seconds(30))
        guard case .draining(_, let deadline) = script.machine.state else { Issue.record("expected draining"); return }
        // The promoted route is all blue in the plan's terms: 6/0, as the plan began.
        #expect(actions.contains(.promoteGreen(split: "6/0")))
        #expect(actions.contains(.drainOldBlue(deadline: deadline)))
        actions = try script.send(.drained, after: .seconds(2))
        #expect(script.machine.state == .promoted(at: script.now))
        #expect(actions.contains(.runHook(event: "promoted", step: 2, split: "0/6")))
    }

    @Test("a hold does not end early, and ticks before it keep the step (no flapping)")
    func holdsAreRespected() throws {
        var script = ReleaseScript(smoke: [])
        try script.startAndReachFirstStep()
        for _ in 0..<299 {
            _ = try script.send(.tick, after: .milliseconds(100))
            #expect(script.machine.currentStep == 0)
        }
        _ = try script.send(.tick, after: .milliseconds(100))
        #expect(script.machine.currentStep == 1)
    }

    @Test("a failing smoke request rolls back before green gets any traffic, naming the instance")
    func smokeFailure() throws {
        var script = ReleaseScript(steps: [PlanStep(split: "6/1"), PlanStep(split: "0/6")])
        _ = try script.send(.start)
        guard case .smokeTesting = script.machine.state else { Issue.record("expected smoke testing"); return }
        let instance = InstanceAddress(host: "127.0.0.1", port: 9201)
        let actions = try script.send(.smokeResults([SmokeOutcome(instance: instance, request: "GET /healthz", failure: "status 503")]))
        #expect(script.machine.state == .rolledBack(.smokeFailed(instance: instance, request: "GET /healthz", detail: "status 503"), at: script.now))
        // All blue in the plan's terms: [6/1, 0/6] has no all-blue step, its largest scale is 7.
        #expect(actions.first == .setSplit("7/0"))
        #expect(!actions.contains(.setSplit("6/1")))
        #expect("\(RollbackReason.smokeFailed(instance: instance, request: "GET /healthz", detail: "status 503"))".contains("127.0.0.1:9201"))
    }

    @Test("each verdict rolls back with its numbers", arguments: [
        (traffic(100, errors: 10), traffic(100), "error rate"),
        (traffic(100, latency: 2_000_000_000), traffic(100), "p99"),
    ])
    func verdicts(green: PoolStatistics, blue: PoolStatistics, expected: String) throws {
        var policy = RollbackPolicy()
        policy.maxErrorRate = 0.05
        policy.maxP99 = .milliseconds(800)
        var script = ReleaseScript(steps: [PlanStep(split: "2/4"), PlanStep(split: "0/6")], smoke: [], rollback: policy)
        try script.startAndReachFirstStep()
        let actions = try script.send(.statistics(green: green, blue: blue), after: .milliseconds(100))
        guard case .rolledBack(let reason, _) = script.machine.state else { Issue.record("expected a rollback"); return }
        #expect("\(reason)".contains(expected))
        #expect(actions.first == .setSplit("6/0"))
        #expect(actions.contains(.runHook(event: "rolledBack", step: 0, split: "6/0")))
    }

    @Test("green clearly worse than blue rolls back even under the absolute limit")
    func worseThanBlue() throws {
        var policy = RollbackPolicy()
        policy.maxErrorRate = 0.10
        policy.minRequests = 50
        var script = ReleaseScript(steps: [PlanStep(split: "2/4")], smoke: [], rollback: policy)
        try script.startAndReachFirstStep()
        _ = try script.send(.statistics(green: traffic(2000, errors: 120), blue: traffic(1000, errors: 5)), after: .milliseconds(100))
        guard case .rolledBack(.worseThanBlue(let green, let blue, let z, _, _), _) = script.machine.state else {
            Issue.record("expected worseThanBlue, got \(script.machine.state)"); return
        }
        #expect(green == 0.06 && blue == 0.005)
        #expect(z > ReleaseVerdict.zThreshold)
    }

    @Test("small samples never roll back: below minRequests there is no verdict")
    func smallSampleGuard() throws {
        var script = ReleaseScript(steps: [PlanStep(split: "2/4")], smoke: [])
        try script.startAndReachFirstStep()
        _ = try script.send(.statistics(green: traffic(49, errors: 49), blue: traffic(20)), after: .milliseconds(100))
        #expect(script.machine.currentStep == 0)
        // Equal versions with a little noise: 3/1000 vs 1/1000 is not "clearly worse".
        #expect(ReleaseVerdict.evaluate(green: traffic(1000, errors: 3), blue: traffic(1000, errors: 1), policy: RollbackPolicy()) == nil)
    }

    @Test("no traffic to green rolls back when the policy says so")
    func noTraffic() throws {
        var script = ReleaseScript(steps: [PlanStep(split: "2/4")], smoke: [], onNoTraffic: .rollback(after: .seconds(5)))
        try script.startAndReachFirstStep()
        _ = try script.send(.statistics(green: PoolStatistics(), blue: traffic(100)), after: .seconds(4))
        #expect(script.machine.currentStep == 0)
        _ = try script.send(.statistics(green: PoolStatistics(), blue: traffic(100)), after: .seconds(1))
        #expect(script.machine.state == .rolledBack(.noTraffic(for: .seconds(5)), at: script.now))
    }

    @Test("pause stops the hold clock; resume continues it")
    func pauseResume() throws {
        var script = ReleaseScript(smoke: [])
        try script.startAndReachFirstStep()
        _ = try script.send(.pause(by: "cli"), after: .seconds(20))
        #expect(script.machine.state == .paused(step: 0, held: .seconds(20), gate: false))
        #expect(try script.send(.pause(by: "cli")).isEmpty)  // repeating is harmless
        _ = try script.send(.resume(by: "cli"), after: .seconds(600))
        _ = try script.send(.tick, after: .seconds(9))
        #expect(script.machine.currentStep == 0)
        _ = try script.send(.tick, after: .seconds(1))
        #expect(script.machine.currentStep == 1)
    }

    @Test("the hold's timer is set for the hold's end: after the hook, after a resume, and again after an early tick")
    func holdTimers() throws {
        var script = ReleaseScript(smoke: [])
        _ = try script.send(.start)
        let start = script.now
        #expect(try script.finishHook(after: .seconds(2)).last == .scheduleTick(at: start + .seconds(32)))
        #expect(try script.send(.tick, after: .seconds(5)) == [.scheduleTick(at: start + .seconds(32))])
        _ = try script.send(.pause(by: "cli"), after: .seconds(5))   // held 10 s
        let resumed = try script.send(.resume(by: "cli"), after: .seconds(60))
        #expect(resumed.last == .scheduleTick(at: script.now + .seconds(20)))
    }

    @Test("deposed: the release ends here with nothing more to do, and later events change nothing")
    func deposed() throws {
        var script = ReleaseScript(smoke: [])
        try script.startAndReachFirstStep()
        #expect(try script.send(.deposed(why: "another replica took its lease")).isEmpty)
        #expect(script.machine.state == .deposed("another replica took its lease", at: script.now))
        #expect(script.machine.state.isFinal && script.machine.state.name == "deposed")
        #expect(script.machine.checkpoint(now: script.now, wallNow: Date()) == nil)  // nothing of it is saved here
        #expect(try script.send(.tick, after: .seconds(60)).isEmpty)
        #expect(try script.send(.statistics(green: traffic(100, errors: 100), blue: traffic(100))).isEmpty)
        #expect(try script.send(.alert(name: "HighErrors")).isEmpty)
        #expect(throws: RolloutMachine.Refusal.self) { try script.send(.pause(by: "cli")) }
        #expect(try script.send(.deposed(why: "again")).isEmpty)
        #expect(script.machine.state == .deposed("another replica took its lease", at: script.now - .seconds(60)))
    }

    @Test("a manual gate waits for resume")
    func manualGate() throws {
        var script = ReleaseScript(steps: [PlanStep(split: "6/1", manualGate: true), PlanStep(split: "0/6")], smoke: [])
        try script.startAndReachFirstStep()
        _ = try script.send(.tick, after: .seconds(3600))
        #expect(script.machine.state == .paused(step: 0, held: .seconds(3600), gate: true))
        _ = try script.send(.resume(by: "api"))
        #expect(script.machine.currentStep == 1)
    }

    @Test("promote skips the remaining steps; abort puts traffic on blue; alerts roll back")
    func operatorEvents() throws {
        var promoted = ReleaseScript(smoke: [])
        try promoted.startAndReachFirstStep()
        let actions = try promoted.send(.promote(by: "cli"))
        #expect(actions.contains(.promoteGreen(split: "6/0")))

        var aborted = ReleaseScript(smoke: [])
        try aborted.startAndReachFirstStep()
        let abortActions = try aborted.send(.abort(reason: "bad build", by: "cli"))
        #expect(abortActions.first == .setSplit("6/0"))
        #expect(abortActions.contains(.record("aborted by cli: bad build; all traffic on blue (6/0)")))
        #expect(try aborted.send(.abort(reason: "again", by: "cli")).isEmpty)

        var alerted = ReleaseScript(smoke: [])
        try alerted.startAndReachFirstStep()
        _ = try alerted.send(.alert(name: "HighLatency"))
        #expect(alerted.machine.state == .rolledBack(.alert(name: "HighLatency"), at: alerted.now))
    }

    @Test("operator events the state refuses name the state and change nothing")
    func refusals() throws {
        var script = ReleaseScript(smoke: [])
        #expect(throws: RolloutMachine.Refusal(event: "promote", state: "idle")) { try script.send(.promote(by: "cli")) }
        #expect(throws: RolloutMachine.Refusal(event: "pause", state: "idle")) { try script.send(.pause(by: "cli")) }
        #expect(throws: RolloutMachine.Refusal(event: "resume", state: "idle")) { try script.send(.resume(by: "cli")) }
        #expect(throws: RolloutMachine.Refusal(event: "abort", state: "idle")) { try script.send(.abort(reason: "x", by: "cli")) }
        try script.startAndReachFirstStep()
        #expect(throws: RolloutMachine.Refusal(event: "start", state: "shifting")) { try script.send(.start) }
        _ = try script.send(.promote(by: "cli"))
        _ = try script.send(.drained)
        let final = script.machine.state
        #expect(throws: RolloutMachine.Refusal(event: "promote", state: "promoted")) { try script.send(.promote(by: "cli")) }
        #expect(throws: RolloutMachine.Refusal(event: "abort", state: "promoted")) { try script.send(.abort(reason: "x", by: "cli")) }
        #expect(script.machine.state == final)
    }

    @Test("a failing step hook rolls back before the step's split is set, naming the command and what it printed")
    func hookFailure() throws {
        var hooks = ReleaseHooks()
        hooks.step = "./scale.sh \"$TEAL_SPLIT\""
        var script = ReleaseScript(steps: [PlanStep(split: "2/4"), PlanStep(split: "0/6")], smoke: [], hooks: hooks)
        _ = try script.send(.start)
        let failure = "exit status 127: sh: 1: ./scale.sh: not found"
        let actions = try script.send(.hookFinished(step: 0, failure: failure))
        let reason = RollbackReason.hookFailed(event: "step", command: "./scale.sh \"$TEAL_SPLIT\"", detail: failure)
        #expect(script.machine.state == .rolledBack(reason, at: script.now))
        #expect(!actions.contains(.setSplit("2/4")))
        #expect(actions.first == .setSplit("6/0"))
        #expect(actions.contains(.record("rolled back: step hook ./scale.sh \"$TEAL_SPLIT\" failed: exit status 127: sh: 1: ./scale.sh: not found")))
    }

    @Test("a hook failure stored before commands were kept still decodes, and reads as before")
    func hookFailureOldRecord() throws {
        let old = Data(#"{"hookFailed":{"event":"step","detail":"exit status 1"}}"#.utf8)
        let reason = try JSONDecoder().decode(RollbackReason.self, from: old)
        #expect(reason == .hookFailed(event: "step", command: nil, detail: "exit status 1"))
        #expect(reason.description == "step hook failed: exit status 1")
        let new = RollbackReason.hookFailed(event: "step", command: "./scale.sh", detail: "exit status 1")
        #expect(try JSONDecoder().decode(RollbackReason.self, from: JSONEncoder().encode(new)) == new)
    }
}

@Suite("Statistics window")
struct StatisticsWindowTests {
    @Test("the window holds the last span of traffic and forgets older buckets")
    func sliding() {
        let epoch = ContinuousClock.now
        var window = StatisticsWindow(bucket: .milliseconds(100), count: 10)
        var cumulative = PoolStatistics()
        window.record(cumulative: cumulative, at: epoch, epoch: epoch)
        for tick in 1...30 {
            cumulative = cumulative.adding(traffic(10, errors: tick > 25 ? 10 : 0))
            window.record(cumulative: cumulative, at: epoch + .milliseconds(100 * tick), epoch: epoch)
        }
        let total = window.total(at: epoch + .milliseconds(3000))
        #expect(total.requests == 100)  // the last 10 buckets of 10 requests
        #expect(total.errors == 50)
    }
}

@Suite("Rollout operator events in every state")
struct RolloutOperatorMatrixTests {
    /// A script brought to the state named `name`.
    static func script(in name: String) throws -> ReleaseScript {
        var script = ReleaseScript(steps: [PlanStep(split: "6/1"), PlanStep(split: "0/6")])
        switch name {
        case "idle":
            break
        case "smoke-testing":
            _ = try script.send(.start)
        case "shifting":
            try script.startAndReachFirstStep()
        case "paused":
            try script.startAndReachFirstStep()
            _ = try script.send(.pause(by: "test"))
        case "draining":
            try script.startAndReachFirstStep()
            _ = try script.send(.promote(by: "test"))
        case "promoted":
            try script.startAndReachFirstStep()
            _ = try script.send(.promote(by: "test"))
            _ = try script.send(.drained)
        case "rolled-back":
            try script.startAndReachFirstStep()
            _ = try script.send(.alert(name: "test"))
        case "aborted":
            try script.startAndReachFirstStep()
            _ = try script.send(.abort(reason: "test", by: "test"))
        default:
            Issue.record("unknown state \(name)")
        }
        #expect(script.machine.state.name == name)
        return script
    }

    static let events: [(String, RolloutMachine.Event)] = [
        ("pause", .pause(by: "op")), ("resume", .resume(by: "op")), ("promote", .promote(by: "op")),
        ("abort", .abort(reason: "op", by: "op")), ("alert", .alert(name: "op")),
    ]

    /// For each state, what each event leads to: a state name, or "refused".
    static let expected: [String: [String]] = [
        //                pause       resume      promote     abort          alert
        "idle":          ["refused", "refused", "refused", "refused", "idle"],
        "smoke-testing": ["refused", "refused", "refused", "aborted", "rolled-back"],
        "shifting":      ["paused", "shifting", "draining", "aborted", "rolled-back"],
        "paused":        ["paused", "shifting", "draining", "aborted", "rolled-back"],
        "draining":      ["refused", "refused", "refused", "refused", "draining"],
        "promoted":      ["refused", "refused", "refused", "refused", "promoted"],
        "rolled-back":   ["refused", "refused", "refused", "rolled-back", "rolled-back"],
        "aborted":       ["refused", "refused", "refused", "aborted", "aborted"],
    ]

    @Test("each operator event is applied, ignored or refused with the state named", arguments: Array(expected.keys).sorted())
    func matrix(state: String) throws {
        for (index, (name, event)) in Self.events.enumerated() {
            var script = try Self.script(in: state)
            let before = script.machine.state
            let outcome = Self.expected[state]![index]
            if outcome == "refused" {
                #expect(throws: RolloutMachine.Refusal(event: name, state: state)) { try script.send(event) }
                #expect(script.machine.state == before, "a refused \(name) changed the state")
            } else {
                _ = try script.send(event)
                #expect(script.machine.state.name == outcome, "\(name) in \(state)")
            }
        }
    }
}

@Suite("Release checkpoints across restarts")
struct RolloutCheckpointTests {
    @Test("a shifting release restored in another process keeps its step and counts its hold from the persisted start")
    func shiftingResumes() throws {
        var script = ReleaseScript()
        try script.startAndReachFirstStep()
        _ = try script.send(.tick, after: .seconds(31))        // step 2 (2/4): smoke test, hook, split
        _ = try script.send(.smokeResults([SmokeOutcome(instance: InstanceAddress(host: "127.0.0.1", port: 9201), request: "GET /healthz", failure: nil)]))
        _ = try script.finishHook()
        _ = try script.send(.tick, after: .seconds(10))        // 10 s into step 2's 30 s hold
        let wallNow = Date(timeIntervalSince1970: 1_800_000_000)
        let checkpoint = try #require(script.machine.checkpoint(now: script.now, wallNow: wallNow))
        #expect(checkpoint.phase == .shifting && checkpoint.step == 1 && checkpoint.smokePassed)
        #expect(abs(checkpoint.since.timeIntervalSince(wallNow) + 10) < 0.001)

        // The new process starts 5 s of wall time later, on a clock with another origin.
        let otherNow = ContinuousClock.now + .seconds(1000)
        let (restored, actions) = try #require(RolloutMachine.restoring(script.machine.spec, from: checkpoint, now: otherNow,
                                                                         wallNow: wallNow.addingTimeInterval(5)))
        #expect(actions.contains(.setSplit("2/4")))
        guard case .shifting(let step, let since) = restored.state else { Issue.record("not shifting: \(restored.state)"); return }
        #expect(step == 1 && otherNow - since == .seconds(15))
        var machine = restored
        // The restored hold ends at the stored step start plus the hold (30 s), not on a poll.
        #expect(actions.contains(.scheduleTick(at: otherNow + .seconds(15))))
        #expect(try machine.handle(.tick, at: otherNow + .seconds(14)) == [.scheduleTick(at: otherNow + .seconds(15))])
        #expect(try machine.handle(.tick, at: otherNow + .seconds(15)).contains(.setSplit("0/6")) == false)  // next step: hook first
        #expect(machine.currentStep == 2)
    }

    @Test("ended releases stay ended; a drain cut by the restart is a promotion; a step outside the plan is refused")
    func endedAndOdd() throws {
        var script = ReleaseScript()
        try script.startAndReachFirstStep()
        _ = try script.send(.alert(name: "Burn"))
        let wallNow = Date()
        let rolledBack = try #require(script.machine.checkpoint(now: script.now, wallNow: wallNow))
        #expect(rolledBack.phase == .rolledBack && rolledBack.isFinal)
        let (machine, actions) = try #require(RolloutMachine.restoring(script.machine.spec, from: rolledBack, now: .now, wallNow: wallNow))
        #expect(actions.isEmpty && machine.state.name == "rolled-back")
        #expect(throws: RolloutMachine.Refusal.self) { var copy = machine; _ = try copy.handle(.promote(by: "cli"), at: .now) }

        var draining = rolledBack
        draining.phase = .draining
        let promoted = try #require(RolloutMachine.restoring(script.machine.spec, from: draining, now: .now, wallNow: wallNow))
        #expect(promoted.0.state.name == "promoted" && promoted.1.contains(.persist))

        var beyond = rolledBack
        beyond.phase = .shifting
        beyond.step = 7
        #expect(RolloutMachine.restoring(script.machine.spec, from: beyond, now: .now, wallNow: wallNow) == nil)
    }
}

/// `OfflineRollbackGuard`: a replica's own verdict while the shared store is away.
@Suite("Offline rollback guard")
struct OfflineRollbackGuardTests {
    static let policy: RollbackPolicy = {
        var policy = RollbackPolicy()
        policy.maxErrorRate = 0.2
        policy.minRequests = 10
        return policy
    }()

    @Test("the counts at the start are a baseline, not traffic: old failures do not roll back")
    func baseline() {
        let start = ContinuousClock.now
        var verdict = OfflineRollbackGuard(policy: Self.policy, blue: traffic(1000), green: traffic(1000, errors: 900), at: start)
        #expect(verdict.observe(blue: traffic(1005), green: traffic(1005, errors: 900), at: start + .milliseconds(100)) == nil)
    }

    @Test("below minRequests no verdict; green failing past the limit over the window rolls back, with the numbers")
    func failing() {
        let start = ContinuousClock.now
        var verdict = OfflineRollbackGuard(policy: Self.policy, blue: PoolStatistics(), green: PoolStatistics(), at: start)
        #expect(verdict.observe(blue: traffic(9), green: traffic(9, errors: 9), at: start + .milliseconds(100)) == nil)
        let reason = verdict.observe(blue: traffic(20), green: traffic(20, errors: 12), at: start + .milliseconds(200))
        #expect(reason == .errorRate(green: 0.6, limit: 0.2, requests: 20))
    }

    @Test("failures older than the window (10 s) are forgotten")
    func window() {
        let start = ContinuousClock.now
        var verdict = OfflineRollbackGuard(policy: Self.policy, blue: PoolStatistics(), green: PoolStatistics(), at: start)
        #expect(verdict.observe(blue: PoolStatistics(), green: traffic(9, errors: 9), at: start + .milliseconds(100)) == nil)
        // 11 s later: 12 more requests, all good; the window holds only those (with the old
        // ones it would be 9 errors in 21 requests, 43%).
        let later = traffic(9, errors: 9).adding(traffic(12))
        #expect(verdict.observe(blue: PoolStatistics(), green: later, at: start + .seconds(11)) == nil)
    }
}

/// `BlueRetryBudget`: retries on blue are at most a share of the route's requests.
@Suite("Blue retry budget")
struct BlueRetryBudgetTests {
    @Test("a first burst of 10, then one retry per 5 requests at 20%; requests counted before it started do not pay")
    func budget() {
        var budget = BlueRetryBudget(share: 0.2, requests: 1_000)
        var allowed = 0
        for _ in 0..<20 { if budget.take(requests: 1_000) { allowed += 1 } }
        #expect(allowed == 10)
        let early = budget.take(requests: 1_004)  // 0.8 of a retry
        let paid = budget.take(requests: 1_005)   // 1.0
        let again = budget.take(requests: 1_005)
        #expect(!early && paid && !again)
        // A long quiet stretch of requests refills at most the burst.
        allowed = 0
        for _ in 0..<20 { if budget.take(requests: 100_000) { allowed += 1 } }
        #expect(allowed == 10)
        // Counters replaced (a promotion): the lower count is the new baseline, and requests
        // after it pay again.
        let spent = budget.take(requests: 50)
        let refilled = budget.take(requests: 55)
        #expect(!spent && refilled)
    }

    @Test("which answers the policy retries")
    func statuses() {
        var policy = BlueRetryPolicy()
        #expect([502, 503, 504].allSatisfy(policy.retries(status:)))
        #expect(![200, 404, 500, 501, 505].contains(where: policy.retries(status:)))
        policy.on500 = true
        #expect(policy.retries(status: 500))
    }
}

/// `StickyKey`: a key lands on the same version everywhere, in the split's proportions, and stays
/// there as that version's share grows.
@Suite("Sticky keys")
struct StickyKeyTests {
    static let keys = (0..<10_000).map { StickyKey.hash(Array("user-\($0)".utf8)) }

    @Test("the hash is the same in every process (fixed values), and the split's shares hold over 10,000 keys")
    func proportions() {
        #expect(StickyKey.hash(Array("user-1".utf8)) == StickyKey.hash(Array("user-1".utf8)))
        #expect(StickyKey.hash([]) != StickyKey.hash([0]))
        for (split, share) in [(Split(blue: 2, green: 4)!, 4.0 / 6), (Split(blue: 6, green: 1)!, 1.0 / 7), (Split(blue: 1, green: 1)!, 0.5)] {
            let green = Self.keys.filter { StickyKey.color(hash: $0, split: split) == .green }.count
            #expect(abs(Double(green) / 10_000 - share) < 0.02, "\(split): \(green)")
        }
        #expect(Self.keys.allSatisfy { StickyKey.color(hash: $0, split: Split(blue: 1, green: 0)!) == .blue })
        #expect(Self.keys.allSatisfy { StickyKey.color(hash: $0, split: Split(blue: 0, green: 1)!) == .green })
    }

    @Test("as green's share grows through a plan, no key on green goes back to blue")
    func monotone() {
        let plan = [Split(blue: 6, green: 0)!, Split(blue: 6, green: 1)!, Split(blue: 2, green: 4)!, Split(blue: 1, green: 5)!, Split(blue: 0, green: 6)!]
        for key in Self.keys {
            var wasGreen = false
            for split in plan {
                let green = StickyKey.color(hash: key, split: split) == .green
                #expect(!(wasGreen && !green))
                wasGreen = green
            }
        }
    }
}
