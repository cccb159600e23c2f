import Foundation
import NIOPosix
import Synchronization
import Testing
import TealCore
import TealProxy
import TealServer

/// A shared store as one replica sees it, with leases the test decides: whether the next lease
/// call wins, loses or fails, and whether release saves are refused (another replica saved).
final class LeasingStore: StateStore, ReleaseLeases {
    enum Answer { case win, lose, fail }

    private struct State {
        var answer = Answer.win
        var refuseSaves = false
        var releases: [String: ReleaseRecord] = [:]
        var orphans: [String] = []
        var acquired: [String] = []
        var released: [String] = []
        var acquireDelay = Duration.zero
    }

    private let state = Mutex(State())

    func answer(_ answer: Answer) { state.withLock { $0.answer = answer } }
    func refuseSaves() { state.withLock { $0.refuseSaves = true } }
    func delayAcquire(_ delay: Duration) { state.withLock { $0.acquireDelay = delay } }
    func orphan(_ record: ReleaseRecord) {
        state.withLock { state in
            state.releases[record.spec.route] = record
            state.orphans = [record.spec.route]
        }
    }
    var acquired: [String] { state.withLock { $0.acquired } }
    var released: [String] { state.withLock { $0.released } }
    var stored: [String: ReleaseRecord] { state.withLock { $0.releases } }

    func load() async throws(StateStoreError) -> StoredState { StoredState(releases: state.withLock { $0.releases }) }
    func saveRoute(_ record: RouteRecord) async throws(StateStoreError) -> Int64 { 0 }
    func deleteRoute(_ name: String) async throws(StateStoreError) {}
    func appendJournal(_ entry: JournalEntry) async throws(StateStoreError) {}
    func journal(route: String?, since: Date?, limit: Int) async throws(StateStoreError) -> [JournalEntry] { [] }
    func pruneJournal(before cutoff: Date, keepingLatest: Int) async throws(StateStoreError) -> Int { 0 }

    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        try state.withLock { state throws(StateStoreError) -> ReleaseRecord in
            if state.refuseSaves { throw .conflict(route: record.spec.route, stored: record.revision, attempted: record.revision) }
            var saved = record
            if saved.id == nil { saved.id = 1 }
            state.releases[record.spec.route] = saved
            return saved
        }
    }

    func acquireLease(route: String, ttl: Duration) async throws(StateStoreError) -> Int64? {
        let delay = state.withLock { $0.acquireDelay }
        if delay > .zero { try? await Task.sleep(for: delay) }
        return try state.withLock { state throws(StateStoreError) -> Int64? in
            switch state.answer {
            case .win:
                state.acquired.append(route)
                state.orphans.removeAll { $0 == route }
                return 1
            case .lose: return nil
            case .fail: throw .writeFailed("no answer from the database")
            }
        }
    }

    func releaseLease(route: String) async throws(StateStoreError) {
        state.withLock { $0.released.append(route) }
    }

    func unledReleases() async throws(StateStoreError) -> [String] {
        try state.withLock { state throws(StateStoreError) -> [String] in
            if state.answer == .fail { throw .unreadable(path: "db", detail: "away") }
            return state.orphans
        }
    }
}

/// A started router with one route `shop` (blue at 127.0.0.1:1, no health checks) on `store`;
/// stopped after `body`, whether it threw or not.
func withStoreRouter(_ store: any StateStore, _ body: (TealRouter) async throws -> Void) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var route = Route(name: "shop", blue: PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 1)]))
    route.health.enabled = false
    var configuration = ProxyConfiguration()
    configuration.listenPort = 0
    let router = TealRouter(routes: [route], configuration: configuration, group: group, store: store, leases: store as? any ReleaseLeases)
    _ = try await router.start()
    var failure: (any Error)?
    do { try await body(router) } catch { failure = error }
    router.releases.stopAll()
    await router.shutdown()
    try await group.shutdownGracefully()
    if let failure { throw failure }
}

/// The life of a release driver with leases, against `LeasingStore`: lease won, lost, renewed
/// late, the save refused, an orphan taken over.
@Suite("Release leases", .serialized)
struct ReleaseLeaseTests {
    static func withRouter(_ body: (TealRouter, LeasingStore) async throws -> Void) async throws {
        let store = LeasingStore()
        try await withStoreRouter(store) { try await body($0, store) }
    }

    static let spec: ReleaseSpec = {
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!), PlanStep(split: Split(blue: 0, green: 1)!)])
        policy.hold = .seconds(3600)
        return ReleaseSpec(route: "shop", green: PoolSpec(version: "2", instances: [InstanceAddress(host: "127.0.0.1", port: 2)]), policy: policy)
    }()

    @Test("won: starting a release takes its lease; renewals keep it")
    func won() async throws {
        try await Self.withRouter { router, store in
            try await router.releases.start(Self.spec)
            #expect(store.acquired == ["shop"])
            await router.releases.keepLeases()
            #expect(store.acquired == ["shop", "shop"])
            #expect(router.releases.state(route: "shop")?.name == "shifting")
            #expect(router.releases.drivenRoutes == ["shop"])
        }
    }

    @Test("held elsewhere: starting is refused, and nothing changes")
    func heldElsewhere() async throws {
        try await Self.withRouter { router, store in
            store.answer(.lose)
            await #expect(throws: ReleaseError.drivenElsewhere("shop")) { try await router.releases.start(Self.spec) }
            #expect(router.releases.state(route: "shop") == nil)
            #expect(router.controller.routes[0].green == nil)
        }
    }

    @Test("lost: another replica took the lease; the run is deposed and stops")
    func lost() async throws {
        try await Self.withRouter { router, store in
            try await router.releases.start(Self.spec)
            store.answer(.lose)
            await router.releases.keepLeases()
            #expect(router.releases.state(route: "shop") == nil)
            #expect(router.releases.drivenRoutes.isEmpty)
        }
    }

    @Test("renewed late: a store that fails renewals for less than the lease time keeps the run; past it, the run is deposed")
    func renewedLate() async throws {
        try await Self.withRouter { router, store in
            try await router.releases.start(Self.spec)
            store.answer(.fail)
            await router.releases.keepLeases()
            #expect(router.releases.state(route: "shop")?.name == "shifting")
            try await Task.sleep(for: ReleaseController.leaseTTL + .milliseconds(100))
            await router.releases.keepLeases()
            #expect(router.releases.state(route: "shop") == nil)
        }
    }

    @Test("the write refused: a release save another replica's lease fences off deposes the run")
    func writeRefused() async throws {
        try await Self.withRouter { router, store in
            try await router.releases.start(Self.spec)
            // The first step is in force (its hook passed, its split saved and set).
            let deadline = ContinuousClock.now + .seconds(5)
            while router.controller.routes[0].split != Split(blue: 1, green: 1)!, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            store.refuseSaves()
            try await router.releases.send(.pause(by: "test"), route: "shop")
            #expect(router.releases.state(route: "shop") == nil)
            #expect(router.releases.drivenRoutes.isEmpty)
            #expect(store.stored["shop"]?.checkpoint.phase == .shifting)  // the pause was never saved
        }
    }

    @Test("a release ended and another started at once on the same route: lease keeping does not give up the new one's lease")
    func endedThenStarted() async throws {
        try await Self.withRouter { router, store in
            try await router.releases.start(Self.spec)
            try await router.releases.send(.abort(reason: "test", by: "test"), route: "shop")
            // The new start takes the lease slowly; lease keeping runs meanwhile, from a view of
            // the runs in which the ended release is still the route's.
            store.delayAcquire(.milliseconds(300))
            async let started: Void = router.releases.start(Self.spec)
            try await Task.sleep(for: .milliseconds(100))
            await router.releases.keepLeases()
            try await started
            #expect(store.released.isEmpty, "\(store.released)")
            #expect(router.releases.drivenRoutes == ["shop"])
        }
    }

    @Test("an orphaned release is taken over from its stored step; an ended one gives its lease up")
    func takeover() async throws {
        try await Self.withRouter { router, store in
            // The route serves green already (as the follower adopted it from the store).
            try await router.controller.setGreen(Self.spec.green, route: "shop")
            let checkpoint = RolloutMachine.Checkpoint(phase: .shifting, step: 1, since: Date(timeIntervalSinceNow: -10))
            store.orphan(ReleaseRecord(id: 7, spec: Self.spec, startedBy: "api", startedAt: Date(timeIntervalSinceNow: -60),
                                       checkpoint: checkpoint, revision: 4))
            await router.releases.keepLeases()
            #expect(!store.acquired.isEmpty && store.acquired.allSatisfy { $0 == "shop" })
            #expect(router.releases.state(route: "shop")?.name == "shifting")
            #expect(router.releases.step(route: "shop") == 1)
            try await router.releases.send(.abort(reason: "test", by: "test"), route: "shop")
            await router.releases.keepLeases()
            #expect(store.released == ["shop"])
        }
    }
}
