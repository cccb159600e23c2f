import Foundation
import Synchronization
import Testing
import TealCore
import TealProxy
@testable import TealServer

/// A release's environment that records every call, with answers the test decides: whether
/// route changes are refused as superseded (another replica holds the lease), and whether
/// release saves conflict.
final class RecordingEnvironment: ReleaseEnvironment {
    private struct State {
        var calls: [String] = []
        var supersede = false
        var conflict = false
        var failSaves = false
        var ended = 0
        var green = PoolStatistics()
        var blue = PoolStatistics()
    }

    private let state = Mutex(State())

    var calls: [String] { state.withLock { $0.calls } }
    var endings: Int { state.withLock { $0.ended } }
    func supersede() { state.withLock { $0.supersede = true } }
    func conflict() { state.withLock { $0.conflict = true } }
    func failSaves() { state.withLock { $0.failSaves = true } }
    func traffic(green: PoolStatistics, blue: PoolStatistics) { state.withLock { ($0.green, $0.blue) = (green, blue) } }
    private func note(_ call: String) { state.withLock { $0.calls.append(call) } }

    func setSplit(_ split: Split, route: String) async throws(RoutingError) {
        if state.withLock({ $0.supersede }) { throw .superseded(route) }
        note("split \(split)")
    }

    func setSplitUnsaved(_ split: Split, route: String) async { note("unsaved split \(split)") }

    func promoteGreen(route: String, split: Split) async throws(RoutingError) -> [Upstream] {
        if state.withLock({ $0.supersede }) { throw .superseded(route) }
        note("promote")
        return []
    }

    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        let (conflict, fail) = state.withLock { ($0.conflict, $0.failSaves) }
        if conflict { throw .conflict(route: record.spec.route, stored: record.revision, attempted: record.revision) }
        if fail { throw .writeFailed("disk full") }
        note("save \(record.checkpoint.phase.rawValue) r\(record.revision)")
        var saved = record
        saved.id = 1
        return saved
    }

    func record(_ text: String, route: String, source: String) async { note("journal \(text)") }
    func smoke(_ requests: [SmokeRequest], instances: [InstanceAddress]) async -> [SmokeOutcome] { [] }
    func runHook(_ command: String, environment: [String: String], timeout: Duration) async -> String? { nil }
    func drain(_ upstreams: [Upstream], until deadline: ContinuousClock.Instant) async { note("drain") }
    func statistics(route: String) -> (blue: PoolStatistics, green: PoolStatistics)? { state.withLock { ($0.blue, $0.green) } }
    func ended(_ release: Release) { state.withLock { $0.ended += 1 } }
}

/// One `Release` (machine plus its actions) against `RecordingEnvironment`: actions in order,
/// real timers, and the driver's deposition as a machine event.
@Suite("Release driver")
struct ReleaseDriverTests {
    static func release(hold: Duration = .seconds(3600), rollback: RollbackPolicy = RollbackPolicy(),
                        environment: RecordingEnvironment) -> Release {
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 2, green: 4)!), PlanStep(split: Split(blue: 0, green: 6)!)])
        policy.hold = hold
        policy.rollback = rollback
        policy.onNoTraffic = .ignore  // the holds count without green traffic
        let spec = ReleaseSpec(route: "shop", green: PoolSpec(version: "2", instances: [InstanceAddress(host: "127.0.0.1", port: 2)]),
                               policy: policy)
        var machine = RolloutMachine(spec: spec)
        machine.evaluationInterval = .milliseconds(20)
        return Release(machine: machine, startedBy: "test", environment: environment)
    }

    /// Rolls back above 5% errors from 10 requests on.
    static let fivePercent: RollbackPolicy = {
        var rollback = RollbackPolicy()
        rollback.maxErrorRate = 0.05
        rollback.minRequests = 10
        return rollback
    }()

    static func traffic(_ requests: UInt64, errors: UInt64 = 0) -> PoolStatistics {
        var stats = PoolStatistics()
        for index in 0..<requests { stats.record(.response(status: index < errors ? 500 : 200), latencyNanoseconds: 1_000_000) }
        return stats
    }

    /// Waits (at most 5 s) until `condition` holds; records an issue when it never does.
    static func eventually(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(condition(), "not within 5 s", sourceLocation: sourceLocation)
    }

    @Test("a step is saved before its split is set, and the hold's timer fires at the hold's end, not before")
    func stepsAndTimers() async throws {
        let environment = RecordingEnvironment()
        let release = Self.release(hold: .milliseconds(400), environment: environment)
        let started = ContinuousClock.now
        try await release.handle(.start)
        try await Self.eventually { environment.calls.contains("split 2/4") }
        let calls = environment.calls
        let saved = try #require(calls.firstIndex(of: "save shifting r1"))
        #expect(saved < calls.firstIndex(of: "split 2/4")!)
        try await Task.sleep(for: .milliseconds(200))
        #expect(release.step == 0)  // half the hold: still the first step
        try await Self.eventually { release.step == 1 }
        #expect(ContinuousClock.now - started >= .milliseconds(400))
        release.stop()
    }

    @Test("a split the store refuses as superseded deposes the release: nothing after it is done, the end is reported once")
    func supersededSplit() async throws {
        let environment = RecordingEnvironment()
        let release = Self.release(environment: environment)
        environment.supersede()
        try await release.handle(.start)
        try await Self.eventually { release.deposition != nil }
        guard case .deposed = release.state else { Issue.record("not deposed: \(release.state)"); return }
        #expect(release.deposition?.contains("another replica holds the lease") == true)
        #expect(!environment.calls.contains { $0.hasPrefix("split") })
        #expect(environment.endings == 1)
        // Operator events are refused from now on; none is carried out.
        await #expect(throws: ReleaseError.self) { try await release.handle(.pause(by: "cli")) }
        #expect(environment.endings == 1)
    }

    @Test("a refused compare-and-set deposes the release even mid-rollback: the rollback's save and hook are not carried out")
    func conflictOnSave() async throws {
        let environment = RecordingEnvironment()
        let release = Self.release(rollback: Self.fivePercent, environment: environment)
        try await release.handle(.start)
        try await Self.eventually { environment.calls.contains("split 2/4") }
        environment.conflict()
        try await release.handle(.statistics(green: Self.traffic(100, errors: 50), blue: Self.traffic(100)))
        #expect(release.deposition != nil)
        // The rollback's split and journal entry were done; its save was refused; its hook never ran.
        #expect(environment.calls.suffix(2).first == "split 6/0")
        #expect(environment.calls.last?.hasPrefix("journal rolled back") == true)
        #expect(!environment.calls.contains { $0.hasPrefix("save rolled-back") })
        #expect(environment.endings == 1)
    }

    @Test("a rollback whose split cannot be saved still applies it, unsaved, and says so")
    func rollbackUnsaved() async throws {
        final class FailingSplits: ReleaseEnvironment {
            let inner = RecordingEnvironment()
            func setSplit(_ split: Split, route: String) async throws(RoutingError) {
                if split.isAllBlue { throw .stateNotSaved("database away") }
                try await inner.setSplit(split, route: route)
            }
            func setSplitUnsaved(_ split: Split, route: String) async { await inner.setSplitUnsaved(split, route: route) }
            func promoteGreen(route: String, split: Split) async throws(RoutingError) -> [Upstream] { [] }
            func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord { try await inner.saveRelease(record) }
            func record(_ text: String, route: String, source: String) async { await inner.record(text, route: route, source: source) }
            func smoke(_ requests: [SmokeRequest], instances: [InstanceAddress]) async -> [SmokeOutcome] { [] }
            func runHook(_ command: String, environment: [String: String], timeout: Duration) async -> String? { nil }
            func drain(_ upstreams: [Upstream], until deadline: ContinuousClock.Instant) async {}
            func statistics(route: String) -> (blue: PoolStatistics, green: PoolStatistics)? { nil }
            func ended(_ release: Release) { inner.ended(release) }
        }
        let environment = FailingSplits()
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 2, green: 4)!), PlanStep(split: Split(blue: 0, green: 6)!)])
        policy.hold = .seconds(3600)
        let release = Release(machine: RolloutMachine(spec: ReleaseSpec(route: "shop", green: PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 2)]),
                                                                        policy: policy)),
                              startedBy: "test", environment: environment)
        try await release.handle(.start)
        try await Self.eventually { environment.inner.calls.contains("split 2/4") }
        try await release.handle(.alert(name: "HighErrors"))
        let calls = environment.inner.calls
        #expect(calls.contains("unsaved split 6/0"))
        #expect(calls.contains { $0.hasPrefix("journal split 6/0 applied but not saved: database away") })
        guard case .rolledBack = release.state else { Issue.record("not rolled back: \(release.state)"); return }
        #expect(release.deposition == nil)
    }

    @Test("the sampler feeds the verdict the windows of both pools: a failing green is rolled back without any event from outside")
    func sampledVerdict() async throws {
        let environment = RecordingEnvironment()
        let release = Self.release(rollback: Self.fivePercent, environment: environment)
        release.launch()
        try await release.handle(.start)
        try await Self.eventually { environment.calls.contains("split 2/4") }
        environment.traffic(green: Self.traffic(100, errors: 40), blue: Self.traffic(100))
        try await Self.eventually { release.state.isFinal }
        guard case .rolledBack = release.state else { Issue.record("not rolled back: \(release.state)"); return }
        try await Self.eventually { environment.calls.contains { $0.hasPrefix("save rolled-back") } }
        #expect(environment.calls.contains("split 6/0"))
        #expect(environment.endings == 1)
    }
}
