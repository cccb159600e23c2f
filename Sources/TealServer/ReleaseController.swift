import Foundation
import Logging
import NIOCore
import Synchronization
import TealAdmin
import TealCore
import TealProxy

/// Why a release request was refused.
public enum ReleaseError: Error, Equatable, CustomStringConvertible {
    case unknownRoute(String)
    case alreadyRunning(String, state: String)
    case noRelease(String)
    case refused(RolloutMachine.Refusal)
    case routing(RoutingError)
    /// Another replica runs this route's release (it holds the lease).
    case drivenElsewhere(String)
    /// The state store cannot be reached to take the release's lease.
    case storeUnavailable(String)

    public var description: String {
        switch self {
        case .unknownRoute(let route): "no route named \(route)"
        case .alreadyRunning(let route, let state): "route \(route) already has a release that is \(state)"
        case .noRelease(let route): "route \(route) has no release"
        case .refused(let refusal): refusal.description
        case .routing(let error): error.description
        case .drivenElsewhere(let route): "another replica runs the release of \(route) (it holds the lease); ask that replica, or wait for its release to end"
        case .storeUnavailable(let detail): "the release's lease cannot be taken: \(detail)"
        }
    }
}

/// Runs releases: one `Release` per route (its `RolloutMachine`, fed with operator requests,
/// timers, smoke and hook results, and every 100 ms the sliding windows of both pools' traffic),
/// with this controller as the environment its actions are carried out against.
public final class ReleaseController: Sendable {
    let routing: RoutingController
    let proxy: ProxyServer
    let group: any EventLoopGroup
    let logger: Logger
    let metrics: TealMetrics?
    let runs = Mutex<[String: Release]>([:])
    private let journal = Mutex<[JournalEntry]>([])
    let store: (any StateStore)?
    /// The other replicas' latest traffic counts of the routes this replica runs releases of.
    public let fleet = FleetTraffic()
    /// Leases on releases when the store is shared: exactly one replica runs a release.
    let leases: (any ReleaseLeases)?
    /// Rollbacks made here that the shared store has not heard of yet (it was away).
    let offline: OfflineRollbacks?
    /// The routes whose release lease this replica holds, and when each was last renewed.
    let leased = Mutex<[String: ContinuousClock.Instant]>([:])
    /// Held while a route's lease is taken for a new run, or given up for an ended one.
    let leaseChanges = AsyncLock()
    /// Each running release's route's retries on blue when it started here (for its journal count).
    let retriesAtStart = Mutex<[String: [BlueRetryReason: UInt64]]>([:])
    /// How long a lease lasts without renewal (a dead replica's releases wait this long), and
    /// how often held leases are renewed and orphaned releases looked for.
    public static let leaseTTL = Duration.seconds(4)
    public static let leaseInterval = Duration.milliseconds(500)
    /// How much of the stored journal is kept.
    public let retention: JournalRetention
    private let pruneSchedule = Mutex(JournalPruneSchedule())
    /// Journal entries kept in memory when there is no store.
    static let memoryJournalLimit = 10_000
    /// How often verdicts are evaluated and timers checked.
    public let evaluationInterval: Duration

    /// `leases`: when replicas share `store`, the leases that let one of them run each release.
    public init(routing: RoutingController, proxy: ProxyServer, group: any EventLoopGroup,
                evaluationInterval: Duration = .milliseconds(100), metrics: TealMetrics? = nil,
                store: (any StateStore)? = nil, leases: (any ReleaseLeases)? = nil, offline: OfflineRollbacks? = nil,
                retention: JournalRetention = JournalRetention(), logger: Logger = Logger(label: "teal.release")) {
        self.routing = routing
        self.offline = offline
        self.store = store
        self.leases = leases
        self.retention = retention
        self.metrics = metrics
        self.proxy = proxy
        self.group = group
        self.evaluationInterval = evaluationInterval
        self.logger = logger
    }

    /// Starts a release of `spec.green` on `spec.route` by `spec.policy`, asked for by `requester`
    /// (its first word is the journal's source). Refused while another release of the route is running.
    public func start(_ spec: ReleaseSpec, drainTimeout: Duration = .seconds(30), by requester: String = "api") async throws(ReleaseError) {
        guard routing.routes.contains(where: { $0.name == spec.route }) else { throw .unknownRoute(spec.route) }
        var machine = RolloutMachine(spec: spec)
        machine.drainTimeout = drainTimeout
        machine.evaluationInterval = evaluationInterval
        let run = Release(machine: machine, startedBy: JournalEntry.source(of: requester), environment: self)
        // The lease and the run change together: lease keeping must not give up, for the run
        // that ended, the lease this new run has just taken on the same route.
        try await leaseChanges.withLock { () async throws(ReleaseError) in
            if runs.withLock({ $0[spec.route].map { !$0.state.isFinal } ?? false }) == false {
                try await takeLease(route: spec.route)
            }
            try runs.withLock { runs throws(ReleaseError) in
                if let existing = runs[spec.route], !existing.state.isFinal {
                    throw .alreadyRunning(spec.route, state: existing.state.name)
                }
                runs[spec.route] = run
            }
        }
        do {
            try await routing.setGreen(spec.green, route: spec.route, allBlue: spec.policy.allBlue)
        } catch {
            _ = runs.withLock { $0.removeValue(forKey: spec.route) }
            throw .routing(error)
        }
        retriesAtStart.withLock { $0[spec.route] = routing.retries(route: spec.route) }
        run.launch()
        try await run.handle(.start)
        // Durable before the API answers, whatever the first step's actions persisted.
        await run.save()
    }

    /// Picks up the releases a previous run of Teal left (`stored`, the latest per route) on the
    /// routes as they are now: running ones continue from their checkpoint, ended ones stay ended
    /// (so their state still shows). A running release whose route's pools no longer match it
    /// (the route file was edited while Teal was down) is aborted, and the journal says why.
    public func restore(_ stored: [String: ReleaseRecord]) async {
        let routes = Dictionary(routing.routes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (name, record) in stored.sorted(by: { $0.key < $1.key }) {
            guard let route = routes[name] else {
                logger.warning("stored release ignored: its route is no longer in the route files", metadata: ["route": "\(name)"])
                continue
            }
            var record = record
            var note: String?
            // A running release continues here only when this replica gets its lease.
            if !record.checkpoint.isFinal, leases != nil {
                guard (try? await takeLease(route: name)) != nil else {
                    logger.notice("stored release left to the replica that runs it", metadata: ["route": "\(name)"])
                    continue
                }
            }
            if !record.checkpoint.isFinal {
                if route.blue.isSameDefinition(as: record.spec.green) {
                    record.checkpoint.phase = .promoted  // the promotion was saved; its checkpoint was not
                    note = "restored after a restart: green was already promoted"
                } else if !record.spec.green.isSameDefinition(as: route.green) {
                    record.checkpoint.phase = .aborted
                    record.checkpoint.abortReason = "the route's pools changed while Teal was down (route file edited)"
                    note = "aborted after a restart: the route's pools no longer match the release (route file edited while Teal was down)"
                }
            }
            var restored = RolloutMachine.restoring(record.spec, from: record.checkpoint, now: .now, wallNow: Date())
            if restored == nil {
                record.checkpoint.phase = .aborted
                record.checkpoint.abortReason = "stored step \(record.checkpoint.step + 1) is outside the plan"
                note = "aborted after a restart: its stored step is outside its plan"
                restored = RolloutMachine.restoring(record.spec, from: record.checkpoint, now: .now, wallNow: Date())
            }
            // An ended release always restores.
            guard let (restoredMachine, actions) = restored else { continue }
            var machine = restoredMachine
            machine.evaluationInterval = evaluationInterval
            let run = Release(machine: machine, record: record, startedBy: record.startedBy, environment: self)
            runs.withLock { $0[name] = run }
            if let note {
                await self.record(note, route: name, source: "restart")
                await run.save()
            }
            // A release caught draining ends here as promoted: its actions journal and save that.
            await run.resume(with: actions, source: "restart")
            guard !run.state.isFinal else { continue }
            logger.notice("release restored", metadata: ["route": "\(name)", "state": "\(machine.state.name)", "step": "\(machine.currentStep.map { $0 + 1 } ?? 0)"])
            retriesAtStart.withLock { $0[name] = routing.retries(route: name) }
            run.launch()
        }
    }

    /// After a reload: aborts running releases whose route went away or whose green pool the
    /// route files changed (the release was of a pool that is no longer routed to).
    func routesChanged(by requester: String) async {
        let routes = Dictionary(routing.routes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (name, run) in runs.withLock({ $0 }) where !run.state.isFinal {
            let reason: String
            if let route = routes[name] {
                guard !run.spec.green.isSameDefinition(as: route.green) else { continue }
                reason = "the reloaded route files changed its green pool"
            } else {
                reason = "its route was removed from the route files"
            }
            try? await run.handle(.abort(reason: reason, by: requester))
        }
    }

    /// Sends an operator event (pause, resume, promote, abort, alert) to the route's release.
    public func send(_ event: RolloutMachine.Event, route: String) async throws(ReleaseError) {
        guard let run = runs.withLock({ $0[route] }) else { throw .noRelease(route) }
        try await run.handle(event)
    }

    /// The latest stored release of `route`.
    func storedRelease(route: String) async throws(StateStoreError) -> ReleaseRecord? {
        try await store?.load().releases[route]
    }

    /// The routes whose release this process runs now (not ended).
    public var drivenRoutes: [String] {
        runs.withLock { runs in runs.filter { !$0.value.state.isFinal }.keys.sorted() }
    }

    /// The release state of a route, if it ever had a release.
    public func state(route: String) -> RolloutMachine.State? {
        runs.withLock { $0[route] }?.state
    }

    /// The spec of the route's latest release.
    public func spec(route: String) -> ReleaseSpec? {
        runs.withLock { $0[route] }?.spec
    }

    /// The plan step in force, if any.
    public func step(route: String) -> Int? {
        runs.withLock { $0[route] }?.step
    }

    /// Waits until the route's release ends (or `timeout` passes) and returns its state.
    public func outcome(route: String, timeout: Duration = .seconds(3600)) async -> RolloutMachine.State? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let state = state(route: route) else { return nil }
            if state.isFinal { return state }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return state(route: route)
    }

    /// Journal entries, oldest first: of one route or all, from `since` on, at most the latest
    /// `limit`. From the store when there is one (so they survive restarts).
    public func events(route: String? = nil, since: Date? = nil, limit: Int = 1000) async -> [JournalEntry] {
        if let store, let stored = try? await store.journal(route: route, since: since, limit: limit) {
            // Entries whose save failed are only in memory; show them too.
            let unsaved = memoryEvents(route: route, since: since)
            return unsaved.isEmpty ? stored : Array((stored + unsaved).sorted { $0.time < $1.time }.suffix(limit))
        }
        return Array(memoryEvents(route: route, since: since).suffix(limit))
    }

    private func memoryEvents(route: String?, since: Date?) -> [JournalEntry] {
        journal.withLock { entries in
            entries.filter { (route == nil || $0.route == route) && (since == nil || $0.time >= since!) }
        }
    }

    private func appendToMemory(_ entry: JournalEntry) {
        journal.withLock { entries in
            entries.append(entry)
            if entries.count > Self.memoryJournalLimit { entries.removeFirst(entries.count - Self.memoryJournalLimit) }
        }
    }

    /// Stops every release's task (shutdown); their state stays as it is.
    public func stopAll() {
        for run in runs.withLock({ Array($0.values) }) { run.stop() }
    }

    // MARK: Carrying out actions (called by ReleaseRun, in order)

    /// Adds an entry to the journal (and the log); with a store, returns once it is durable (an
    /// entry that cannot be saved stays in memory, and the log says so).
    public func record(_ text: String, route: String, source: String) async {
        let entry = JournalEntry(time: Date(), route: route, text: text, source: source)
        logger.info("release", metadata: ["route": "\(route)", "event": "\(text)", "source": "\(source)"])
        guard let store else { return appendToMemory(entry) }
        do {
            try await store.appendJournal(entry)
        } catch {
            logger.error("journal entry not saved", metadata: ["route": "\(route)", "error": "\(error)"])
            appendToMemory(entry)
            return
        }
        pruneJournalIfDue(appended: 1)
    }

    /// Prunes the stored journal in the background when `JournalPruneSchedule` says it is due
    /// after `appended` new entries (0: a timer's check; the first check always prunes).
    public func pruneJournalIfDue(appended: Int) {
        guard store != nil, pruneSchedule.withLock({ $0.shouldPrune(appended: appended, at: .now) }) else { return }
        Task {
            _ = await self.pruneJournal()
            self.pruneSchedule.withLock { $0.finished(at: .now) }
        }
    }

    /// Deletes the stored journal entries past `retention` now; returns how many went (`nil`
    /// without a store, or when the store failed, which is logged).
    @discardableResult
    public func pruneJournal(now: Date = Date()) async -> Int? {
        guard let store else { return nil }
        do {
            let removed = try await store.pruneJournal(before: retention.cutoff(now: now), keepingLatest: retention.maxEntries)
            if removed > 0 {
                logger.info("journal pruned", metadata: ["removed": "\(removed)", "max age": "\(retention.maxAge)",
                                                         "max entries": "\(retention.maxEntries)"])
            }
            return removed
        } catch {
            logger.error("journal not pruned", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The route's cumulative counts as the verdict judges them: this replica's, plus those the
    /// other replicas published lately when the state is shared (`FleetTraffic`).
    public func statistics(route: String) -> (blue: PoolStatistics, green: PoolStatistics)? {
        guard let blue = routing.statistics(route: route, pool: .blue),
              let green = routing.statistics(route: route, pool: .green) else { return nil }
        guard let others = fleet.others(route: route) else { return (blue, green) }
        return (blue.adding(others.blue), green.adding(others.green))
    }

}

/// The router as its releases' environment.
extension ReleaseController: ReleaseEnvironment {
    func setSplit(_ split: Split, route: String) async throws(RoutingError) {
        try await routing.setSplit(split, route: route, asReleaseDriver: leases != nil)
    }

    func setSplitUnsaved(_ split: Split, route: String) async {
        _ = try? await routing.setSplit(split, route: route, persist: false)
        offline?.appliedUnsaved(split, route: route, why: "the state store did not take it")
    }

    func promoteGreen(route: String, split: Split) async throws(RoutingError) -> [Upstream] {
        try await routing.promoteGreen(route: route, split: split, asReleaseDriver: leases != nil)
    }

    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        guard let store else { return record }
        do {
            return try await store.saveRelease(record)
        } catch {
            // Without leases no other replica saves releases: a conflict is an error like any other.
            if case .conflict = error, leases == nil { throw .writeFailed("\(error)") }
            logger.error("release state not saved", metadata: ["route": "\(record.spec.route)", "error": "\(error)"])
            throw error
        }
    }

    func runHook(_ command: String, environment: [String: String], timeout: Duration) async -> String? {
        await HookRunner.run(command, environment: environment, timeout: timeout)
    }

    func drain(_ upstreams: [Upstream], until deadline: ContinuousClock.Instant) async {
        while ContinuousClock.now < deadline {
            if await proxy.busyUpstreamConnections(to: upstreams) == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        await proxy.closeIdleUpstreamConnections(to: upstreams)
    }

    func ended(_ release: Release) {
        let route = release.spec.route
        if let why = release.deposition {
            // Another replica runs it now: forget it here (reads and actions go to that replica).
            let removed = runs.withLock { runs -> Bool in
                guard runs[route] === release else { return false }
                runs[route] = nil
                return true
            }
            leased.withLock { $0[route] = nil }
            release.stop()
            if removed { logger.warning("release deposed: no longer run by this replica", metadata: ["route": "\(route)", "why": "\(why)"]) }
            return
        }
        if case .rolledBack(let reason, _) = release.state { metrics?.recordRollback(route: route, reason: reason) }
        // How many of green's failures users did not see, by reason (since the release started here).
        guard let start = retriesAtStart.withLock({ $0.removeValue(forKey: route) }) else { return }
        let now = routing.retries(route: route)
        let counts = BlueRetryReason.allCases.compactMap { reason -> (BlueRetryReason, UInt64)? in
            let count = (now[reason] ?? 0) &- (start[reason] ?? 0)
            return count > 0 && count < UInt64(Int.max) ? (reason, count) : nil
        }
        guard !counts.isEmpty else { return }
        let total = counts.map(\.1).reduce(0, +)
        let text = "\(total) request\(total == 1 ? "" : "s") green failed during the release \(total == 1 ? "was" : "were") answered by blue ("
            + counts.map { "\($0.0.label) \($0.1)" }.joined(separator: ", ") + ")"
        Task { await self.record(text, route: route, source: "verdict") }
    }

    /// Sends every smoke request to every instance, directly.
    func smoke(_ requests: [SmokeRequest], instances: [InstanceAddress]) async -> [SmokeOutcome] {
        let group = self.group
        return await withTaskGroup(of: SmokeOutcome.self) { tasks in
            for instance in instances {
                for request in requests {
                    tasks.addTask {
                        let result = (try? await HTTPProbe.send(method: request.method, path: request.path, to: instance,
                                                                timeout: request.timeout, keepBody: request.bodyContains != nil,
                                                                on: group.next()).get()) ?? ProbeResult(failure: "probe failed")
                        let name = "\(request.method) \(request.path)"
                        var failure: String?
                        if let status = result.status {
                            if status != request.expect {
                                failure = "status \(status), expected \(request.expect)"
                            } else if let needle = request.bodyContains, !(result.body ?? "").contains(needle) {
                                failure = "body does not contain \"\(needle)\""
                            }
                        } else {
                            failure = result.summary
                        }
                        return SmokeOutcome(instance: instance, request: name, failure: failure)
                    }
                }
            }
            var outcomes: [SmokeOutcome] = []
            for await outcome in tasks { outcomes.append(outcome) }
            return outcomes.sorted { ($0.instance, $0.request) < ($1.instance, $1.request) }
        }
    }
}

/// Runs a hook command with `/bin/sh -c` in Teal's working directory, bounded by a timeout, and
/// keeps the end of its output (stdout and stderr through one pipe, read as it comes, so a chatty
/// hook can neither fill the pipe and stall nor use unbounded memory).
public enum HookRunner {
    /// How long the output is still read after the hook is seen to exit, should something else
    /// still hold the pipe open. (Foundation's `Process` on Linux sees the exit only once every
    /// child the hook left in the background has exited too, so such a hook counts as running,
    /// up to `timeout`.)
    static let outputGrace: Duration = .milliseconds(200)

    /// `nil` on success, else what went wrong and the last lines of the output:
    /// `exit status 127: /bin/sh: 1: ./scale.sh: not found`.
    public static func run(_ command: String, environment: [String: String], timeout: Duration) async -> String? {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return "could not start: no pipe for its output (errno \(errno))" }
        // Other children must not inherit the pipe (the hook gets the write end as its stdout/stderr).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let output = PipeTailReader(fd: fds[0])
        let writer = FileHandle(fileDescriptor: fds[1], closeOnDealloc: false)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = writer
        process.standardError = writer
        let failure: String? = await withCheckedContinuation { continuation in
            let once = Mutex(false)
            let finish: @Sendable (String?) -> Void = { result in
                if once.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: result) }
            }
            process.terminationHandler = { process in
                let status = process.terminationStatus
                let failed = process.terminationReason == .uncaughtSignal ? "killed by signal \(status)" : "exit status \(status)"
                finish(status == 0 && process.terminationReason == .exit ? nil : failed)
            }
            do {
                try process.run()
            } catch {
                finish("could not start: \(error)")
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                if process.isRunning {
                    process.terminate()
                    finish("timed out after \(timeout)")
                }
            }
        }
        // The child has its copy; without closing ours the pipe never reaches end of file.
        close(fds[1])
        let tail = await output.finish(grace: outputGrace)
        guard let failure else { return nil }
        return tail.isEmpty ? failure : "\(failure): \(tail)"
    }
}

/// Reads a pipe on its own thread until end of file, or until told to stop and the pipe stays
/// quiet; keeps a `HookOutputTail` of what it read. Closes the pipe when done.
final class PipeTailReader: Sendable {
    private let tail = Mutex(HookOutputTail())
    /// When set, reading stops at this instant even without end of file.
    private let stopAt = Mutex<ContinuousClock.Instant?>(nil)
    private let done = Mutex<(finished: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    init(fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while true {
                if let deadline = stopAt.withLock({ $0 }), ContinuousClock.now >= deadline { break }
                poller.revents = 0
                let ready = poll(&poller, 1, 50)
                if ready < 0 && errno == EINTR { continue }
                if ready < 0 { break }
                if ready == 0 { continue }
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                tail.withLock { $0.append(buffer[0..<count]) }
            }
            close(fd)
            let waiter = done.withLock { state in
                state.finished = true
                return state.waiter
            }
            waiter?.resume()
        }
        thread.start()
    }

    /// Stops reading `grace` from now (or at end of file, if sooner) and returns the tail's summary.
    func finish(grace: Duration) async -> String {
        stopAt.withLock { $0 = .now + grace }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = done.withLock { state in
                if !state.finished { state.waiter = continuation }
                return state.finished
            }
            if finished { continuation.resume() }
        }
        return tail.withLock { $0.summary }
    }
}

/// The other replicas' traffic counts of routes whose release this replica runs, as last read
/// from the shared store (`StateFollower` reads them every 100 ms). Counts older than `maxAge`
/// are not used: a replica that stopped publishing drops out of the sum.
public final class FleetTraffic: Sendable {
    private let reports = Mutex<[String: (report: TrafficReport, at: ContinuousClock.Instant)]>([:])
    static let maxAge = Duration.seconds(1)

    public init() {}

    /// Replaces the counts of `routes` by `latest` (a route missing from it has no other
    /// replica's counts now).
    public func update(routes: [String], latest: [TrafficReport], at now: ContinuousClock.Instant = .now) {
        reports.withLock { reports in
            for route in routes { reports[route] = nil }
            for report in latest { reports[report.route] = (report, now) }
        }
    }

    /// The other replicas' summed counts of `route`, when read lately.
    public func others(route: String, now: ContinuousClock.Instant = .now) -> TrafficReport? {
        reports.withLock { reports in
            guard let entry = reports[route], now - entry.at <= Self.maxAge else { return nil }
            return entry.report
        }
    }
}
