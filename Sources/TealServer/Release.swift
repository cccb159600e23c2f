import Foundation
import Synchronization
import TealCore
import TealProxy

/// Everything a release does outside its own state, one call per `RolloutMachine.Action`:
/// routing, the store, the journal, probes, hooks and drains. `ReleaseController` is the
/// environment in a router; tests pass fakes.
protocol ReleaseEnvironment: Sendable {
    /// Sets the route's split, durable first, as the release's driver: a store shared by replicas
    /// refuses it (`RoutingError.superseded`) while another replica holds the release's lease.
    func setSplit(_ split: Split, route: String) async throws(RoutingError)
    /// Sets the split without saving it: a rollback whose save failed (safety first).
    func setSplitUnsaved(_ split: Split, route: String) async
    /// Promotes green (fenced like `setSplit`); returns the old blue pool's upstreams.
    func promoteGreen(route: String, split: Split) async throws(RoutingError) -> [Upstream]
    /// Saves the release (compare-and-set by revision; `conflict` when another replica saved it).
    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord
    /// Adds an entry to the journal; returns once it is durable, or kept in memory when it cannot be.
    func record(_ text: String, route: String, source: String) async
    /// Sends every smoke request to every instance.
    func smoke(_ requests: [SmokeRequest], instances: [InstanceAddress]) async -> [SmokeOutcome]
    /// Runs a hook command; `nil` on success, else what went wrong.
    func runHook(_ command: String, environment: [String: String], timeout: Duration) async -> String?
    /// Returns once `upstreams` have no request in flight, or at `deadline`; then closes their idle connections.
    func drain(_ upstreams: [Upstream], until deadline: ContinuousClock.Instant) async
    /// The route's cumulative traffic counts as the verdict judges them (`blue`, `green`).
    func statistics(route: String) -> (blue: PoolStatistics, green: PoolStatistics)?
    /// The release ended here (promoted, rolled back, aborted or deposed); called once.
    func ended(_ release: Release)
}

/// One release: its `RolloutMachine` and the one entry point that feeds it (`handle`). Each event
/// changes the machine under a lock, and the actions it returns are then carried out in order
/// against the environment before the next event is taken (the shape of async-http-client's
/// `modifyStateAndRunActions`). Timers are real: a tick fires at the instant the machine asked
/// for, and the traffic windows are sampled every `evaluationInterval` while green may take
/// traffic. A write the store refuses because another replica runs the release now, or a lost
/// lease, is the machine's `deposed` event: nothing more is done here.
final class Release: Sendable {
    private struct Inner {
        var machine: RolloutMachine
        var record: ReleaseRecord?
        var blueWindow = StatisticsWindow()
        var greenWindow = StatisticsWindow()
        /// The pending tick and the traffic sampler.
        var timer: Task<Void, Never>?
        var sampler: Task<Void, Never>?
        /// The old blue pool, set at promotion for the drain.
        var oldBlue: [Upstream] = []
        /// Why this replica stopped running the release (it runs elsewhere now).
        var deposed: String?
        /// Shut down: no more events are taken.
        var stopped = false
        /// What `ended` was told: 0 nothing, 1 the end, 2 the deposition.
        var reported = 0
    }

    let spec: ReleaseSpec
    /// The journal source of whoever started the release.
    let startedBy: String
    let evaluationInterval: Duration
    private let environment: any ReleaseEnvironment
    private let inner: Mutex<Inner>
    /// Held while an event is handled and its actions carried out.
    private let serial = AsyncLock()
    private let epoch = ContinuousClock.now

    init(machine: RolloutMachine, record: ReleaseRecord? = nil, startedBy: String, environment: any ReleaseEnvironment) {
        self.spec = machine.spec
        self.startedBy = startedBy
        self.evaluationInterval = machine.evaluationInterval
        self.environment = environment
        self.inner = Mutex(Inner(machine: machine, record: record))
    }

    var state: RolloutMachine.State { inner.withLock { $0.machine.state } }
    /// The plan step in force, if any.
    var step: Int? { inner.withLock { $0.machine.currentStep } }
    /// Why this replica no longer runs the release, once deposed.
    var deposition: String? { inner.withLock { $0.deposed } }
    /// Whether the release has ended and that end is saved (when the store is away at the end,
    /// it is not yet: the lease is kept until it is).
    var endSaved: Bool {
        inner.withLock { inner in
            guard inner.machine.state.isFinal, let saved = inner.record?.checkpoint.phase else { return false }
            return inner.machine.checkpoint(now: .now, wallNow: Date())?.phase == saved
        }
    }

    /// The entry point: applies `event` at the current time, then carries out the actions it
    /// produced, in order. Throws the machine's refusal (nothing changes then), or `noRelease`
    /// once the release was stopped (shutdown).
    func handle(_ event: RolloutMachine.Event) async throws(ReleaseError) {
        try await serially(source: Self.source(of: event, startedBy: startedBy)) { () throws(ReleaseError) -> [RolloutMachine.Action] in
            let now = ContinuousClock.now
            return try inner.withLock { inner throws(ReleaseError) -> [RolloutMachine.Action] in
                guard !inner.stopped else { throw .noRelease(spec.route) }
                do throws(RolloutMachine.Refusal) {
                    return try inner.machine.handle(event, at: now)
                } catch {
                    throw .refused(error)
                }
            }
        }
    }

    /// Carries out the actions that pick up a restored release (`RolloutMachine.restoring`).
    func resume(with actions: [RolloutMachine.Action], source: String) async {
        await serially(source: source) { actions }
    }

    /// Saves the release now (its start is durable before the API answers).
    func save() async {
        await serially(source: startedBy) { [.persist] }
    }

    /// Holding `serial`: `modify` changes the machine and returns its actions, which are then
    /// carried out in order (those after a deposition are not); reports the end once.
    private func serially<E: Error>(source: String, _ modify: () throws(E) -> [RolloutMachine.Action]) async throws(E) {
        await serial.lock()
        defer { serial.unlock() }
        let actions = try modify()
        for action in actions {
            guard inner.withLock({ $0.deposed == nil }) else { break }
            await run(action, source: source)
        }
        let ended = inner.withLock { inner -> Bool in
            let over = inner.deposed != nil ? 2 : inner.machine.state.isFinal ? 1 : 0
            guard over > inner.reported else { return false }
            inner.reported = over
            inner.timer?.cancel()
            inner.sampler?.cancel()
            return true
        }
        if ended { environment.ended(self) }
    }

    /// Starts sampling the traffic windows (from now: their baseline is taken here).
    func launch() {
        if let cumulative = environment.statistics(route: spec.route) {
            let now = ContinuousClock.now
            inner.withLock { inner in
                inner.blueWindow.record(cumulative: cumulative.blue, at: now, epoch: epoch)
                inner.greenWindow.record(cumulative: cumulative.green, at: now, epoch: epoch)
            }
        }
        let interval = evaluationInterval
        let sampler = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled, let event = self.sample() else { continue }
                // Not a child task: cancelling the sampler must not cut short what the event does.
                await Task { try? await self.handle(event) }.value
            }
        }
        inner.withLock { inner in
            if inner.stopped || inner.reported > 0 { sampler.cancel() } else { inner.sampler = sampler }
        }
    }

    /// Stops the release's timers and takes no more events (shutdown); its state stays as it is.
    func stop() {
        inner.withLock { inner in
            inner.stopped = true
            inner.timer?.cancel()
            inner.sampler?.cancel()
        }
    }

    /// The windows of both pools' traffic now, while the verdict judges them (shifting or paused).
    private func sample() -> RolloutMachine.Event? {
        switch state {
        case .shifting, .paused: break
        default: return nil
        }
        guard let cumulative = environment.statistics(route: spec.route) else { return nil }
        let now = ContinuousClock.now
        return inner.withLock { inner in
            inner.blueWindow.record(cumulative: cumulative.blue, at: now, epoch: epoch)
            inner.greenWindow.record(cumulative: cumulative.green, at: now, epoch: epoch)
            return .statistics(green: inner.greenWindow.total(at: now), blue: inner.blueWindow.total(at: now))
        }
    }

    /// Hands `event` to `handle` from a task of its own (for results of work the actions started).
    private func post(_ event: RolloutMachine.Event) {
        Task { try? await self.handle(event) }
    }

    /// This replica may no longer run the release: the machine's `deposed` event.
    private func depose(_ why: String) {
        let now = ContinuousClock.now
        inner.withLock { inner in
            _ = try? inner.machine.handle(.deposed(why: why), at: now)
            inner.deposed = why
        }
    }

    /// Feeds `.deposed` through the entry point (a lease that could not be kept).
    func depose(why: String) async {
        await serially(source: "lease") { () -> [RolloutMachine.Action] in
            depose(why)
            return []
        }
    }

    private func run(_ action: RolloutMachine.Action, source: String) async {
        let route = spec.route
        switch action {
        case .setSplit(let split):
            do {
                try await environment.setSplit(split, route: route)
            } catch .superseded {
                depose("the store refused its split \(split): another replica holds the lease")
            } catch .stateNotSaved(let detail) where split.isAllBlue {
                await environment.setSplitUnsaved(split, route: route)
                await environment.record("split \(split) applied but not saved: \(detail)", route: route, source: source)
            } catch {
                await environment.record("could not set split \(split): \(error)", route: route, source: source)
            }
        case .runSmoke(let requests, let instances):
            let environment = self.environment
            Task { self.post(.smokeResults(await environment.smoke(requests, instances: instances))) }
        case .runHook(let event, let step, let split):
            runHook(event, step: step, split: split)
        case .promoteGreen(let split):
            do {
                let oldBlue = try await environment.promoteGreen(route: route, split: split)
                inner.withLock { $0.oldBlue = oldBlue }
            } catch .superseded {
                depose("the store refused its promotion: another replica holds the lease")
            } catch {
                await environment.record("could not promote: \(error)", route: route, source: source)
            }
        case .drainOldBlue(let deadline):
            let (upstreams, environment) = (inner.withLock { $0.oldBlue }, self.environment)
            Task {
                await environment.drain(upstreams, until: deadline)
                self.post(.drained)
            }
        case .persist:
            await persist()
        case .record(let text):
            await environment.record(text, route: route, source: source)
        case .scheduleTick(let at):
            let timer = Task {
                try? await Task.sleep(until: at, clock: .continuous)
                if !Task.isCancelled { self.post(.tick) }
            }
            inner.withLock { inner in
                inner.timer?.cancel()
                inner.timer = timer
            }
        }
    }

    private func runHook(_ event: String, step: Int, split: Split) {
        let hooks = spec.policy.hooks
        let command = switch event {
        case "step": hooks.step
        case "promoted": hooks.promoted
        default: hooks.rolledBack
        }
        guard let command else {
            if event == "step" { post(.hookFinished(step: step, failure: nil)) }
            return
        }
        let route = spec.route
        let variables = ["TEAL_ROUTE": route, "TEAL_EVENT": event, "TEAL_STEP": String(step + 1),
                         "TEAL_SPLIT": split.description, "TEAL_BLUE_WEIGHT": String(split.blue),
                         "TEAL_GREEN_WEIGHT": String(split.green), "TEAL_GREEN_VERSION": spec.green.version ?? ""]
        let environment = self.environment
        Task {
            let failure = await environment.runHook(command, environment: variables, timeout: hooks.timeout)
            if let failure {
                await environment.record("\(event) hook \(ReleaseHooks.display(command)) failed: \(failure)", route: route, source: "verdict")
            }
            if event == "step" { self.post(.hookFinished(step: step, failure: failure)) }
        }
    }

    /// Saves the checkpoint. A failure is journaled and the release goes on (a rollback must
    /// never wait for a disk), except a refused compare-and-set: another replica runs it now.
    private func persist() async {
        let record = inner.withLock { inner -> ReleaseRecord? in
            guard let checkpoint = inner.machine.checkpoint(now: .now, wallNow: Date()) else { return nil }
            var record = inner.record ?? ReleaseRecord(spec: spec, startedBy: startedBy, startedAt: Date(), checkpoint: checkpoint, revision: 0)
            record.checkpoint = checkpoint
            record.revision += 1
            return record
        }
        guard let record else { return }
        do {
            let saved = try await environment.saveRelease(record)
            inner.withLock { $0.record = saved }
        } catch .conflict {
            depose("the store refused its save: another replica saved it since (it holds the lease)")
        } catch {
            await environment.record("release state not saved: \(error)", route: spec.route, source: "verdict")
        }
    }

    /// Who caused an event, as the journal names it.
    private static func source(of event: RolloutMachine.Event, startedBy: String) -> String {
        switch event {
        case .start: startedBy
        case .pause(let who), .resume(let who), .promote(let who), .abort(_, let who): JournalEntry.source(of: who)
        case .alert: "alert"
        case .statistics, .smokeResults, .hookFinished: "verdict"
        case .tick, .drained: "plan"
        case .deposed: "lease"
        }
    }
}
