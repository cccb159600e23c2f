import CoreMetrics
import Foundation
import Logging
import TealAdmin
import NIOCore
import Synchronization
import TealCore
import TealProxy

/// Owns the routing state that changes at run time — routes, splits, instance health — and
/// publishes a new immutable `RoutingSnapshot` to the proxy whenever it changes. Upstream objects,
/// instance rotations and traffic recorders are kept across snapshots so pools, counters and
/// round robin carry over.
public final class RoutingController: UpstreamHealthReporter, Sendable {
    private struct RouteState {
        var route: Route
        var health: PoolHealth
        var blueRecorder: TrafficRecorder
        var greenRecorder: TrafficRecorder
        var blueRotation = InstanceRotation()
        var greenRotation = InstanceRotation()
        /// Replaced only when the split changes, so its sequence does not restart on health changes.
        var picker: PoolPicker
        /// Latency histograms by colour (they stay with the colour at promotion).
        var blueLatency: CoreMetrics.Timer?
        var greenLatency: CoreMetrics.Timer?
        /// The route as its file defines it (the basis of stored run-time state).
        var file: Route
        /// The store revision of the state served (0 until saved or adopted at one).
        var revision: Int64 = 0
        /// Retries on blue by reason (`BlueRetryReason`).
        var retries: ShardedCounters
    }

    private struct UpstreamKey: Hashable {
        var route: String
        var address: InstanceAddress
        var tls: UpstreamTLS?
    }

    private struct State {
        var routes: [RouteState] = []
        var upstreams: [UpstreamKey: Upstream] = [:]
        /// One client TLS context per pool TLS setting.
        var tlsClients: [UpstreamTLS: UpstreamTLSClient] = [:]
    }

    private let state = Mutex(State())
    /// Serializes route changes (see `mutate`).
    private let mutations = AsyncLock()
    private let store: (any StateStore)?
    private let metrics: TealMetrics?
    /// Recent traffic per route (10 s windows), sampled by `sampleRecentTraffic`. Each window
    /// follows one pool's counters (keyed by its recorder), so a promotion, which hands green's
    /// counters to blue, hands blue the window of those counters too.
    private let recent = Mutex<[String: [ObjectIdentifier: StatisticsWindow]]>([:])
    private let epoch = ContinuousClock.now
    private let proxy: ProxyServer
    private let logger: Logger

    /// `metrics` makes the per-pool latency histograms (`teal_request_duration_seconds`); without
    /// it none are recorded. `routes` are the routes to serve; `files` the same routes as their files define them (the
    /// basis recorded with stored state; by default `routes`). With a `store`, every change is
    /// saved before it applies.
    public init(routes: [Route], files: [Route]? = nil, proxy: ProxyServer, metrics: TealMetrics? = nil,
                store: (any StateStore)? = nil, logger: Logger = Logger(label: "teal.routing")) {
        self.proxy = proxy
        self.logger = logger
        self.store = store
        self.metrics = metrics
        let files = Dictionary((files ?? routes).map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let entries = routes.map { makeState($0, file: files[$0.name] ?? $0) }
        state.withLock { $0.routes = entries }
    }

    private func makeState(_ route: Route, file: Route) -> RouteState {
        RouteState(route: route,
                   health: PoolHealth(spec: route.health, blue: route.blue.instances, green: route.pool(.green).instances),
                   blueRecorder: TrafficRecorder(shards: proxy.shardCount),
                   greenRecorder: TrafficRecorder(shards: proxy.shardCount),
                   picker: PoolPicker(split: route.split),
                   blueLatency: metrics?.latencyTimer(route: route.name, pool: .blue),
                   greenLatency: metrics?.latencyTimer(route: route.name, pool: .green), file: file,
                   retries: ShardedCounters(shards: proxy.shardCount, fields: BlueRetryReason.allCases.count))
    }

    /// Replaces the routes by a new set from the route files, atomically, as `RouteReload.plan`
    /// decides: routes keep their counters, rotations and run-time state where the file did not
    /// change what that state rests on. With a store the new state is saved first, so a reload
    /// that cannot be saved changes nothing. Returns what changed, and the upstreams no longer
    /// routed to (for the caller to drain). `resolved` gives DNS pools the instances their names
    /// resolve to now.
    public func reload(_ files: [Route], resolved: [String: [PoolColor: [InstanceAddress]]] = [:]) async throws(RoutingError) -> (ReloadSummary, [Upstream]) {
        try await mutations.withLock { () async throws(RoutingError) -> (ReloadSummary, [Upstream]) in
            let current = state.withLock { $0.routes }
            let plan = RouteReload.plan(served: current.map { RouteReload.Served(file: $0.file, route: $0.route) }, files: files, resolved: resolved)
            let summary = plan.summary
            var entries: [RouteState] = []
            for (file, decision) in zip(files, plan.decisions) {
                switch decision {
                case .added(let route):
                    entries.append(makeState(route, file: file))
                case .unchanged(let name):
                    entries.append(current.first { $0.route.name == name }!)
                case .changed(let route, let keepsBlue, let keepsGreen):
                    var entry = current.first { $0.route.name == route.name }!
                    if route.split != entry.route.split { entry.picker = PoolPicker(split: route.split) }
                    if !keepsBlue {
                        entry.blueRecorder = TrafficRecorder(shards: proxy.shardCount)
                        entry.blueRotation = InstanceRotation()
                    }
                    if !keepsGreen {
                        entry.greenRecorder = TrafficRecorder(shards: proxy.shardCount)
                        entry.greenRotation = InstanceRotation()
                    }
                    entry.health = PoolHealth(spec: route.health, blue: route.blue.instances, green: route.pool(.green).instances, keeping: entry.health)
                    entry.route = route
                    entry.file = file
                    entries.append(entry)
                }
            }
            if let store {
                do {
                    for index in entries.indices where !summary.unchanged.contains(entries[index].route.name) {
                        entries[index].revision = try await store.saveRoute(entries[index].route.record(file: entries[index].file, at: Date()))
                    }
                    for name in summary.removed { try await store.deleteRoute(name) }
                } catch {
                    throw .stateNotSaved("\(error)")
                }
            }
            let gone = state.withLock { state -> [Upstream] in
                state.routes = entries
                let routed = Set(entries.flatMap { entry in
                    PoolColor.allCases.flatMap { color in
                        let pool = entry.route.pool(color)
                        return pool.instances.map { UpstreamKey(route: entry.route.name, address: $0, tls: pool.tls) }
                    }
                })
                let stale = state.upstreams.filter { !routed.contains($0.key) }
                for key in stale.keys { state.upstreams[key] = nil }
                return Array(stale.values)
            }
            recent.withLock { recent in for name in summary.removed { recent[name] = nil } }
            await publish()
            return (summary, gone)
        }
    }

    /// The routes as they are now (with current splits).
    public var routes: [Route] { state.withLock { $0.routes.map(\.route) } }

    /// Builds the snapshot from the current state and publishes it; returns when every event
    /// loop routes by it.
    public func publish() async {
        let snapshot = makeSnapshot(at: .now)
        await proxy.publish(snapshot)
    }

    /// Changes a route's split; the next request routes by it once this returns. With a store,
    /// the new split is durable first (`persist: false` skips that, for a rollback that must
    /// happen even when the disk cannot take it). Throws when the route is unknown, the split gives
    /// green traffic it has no instances for, or the state cannot be saved (nothing changes then).
    /// Returns the split it replaced (read under the same lock as the change, so concurrent
    /// changes each get their own predecessor). A release's own change (`asReleaseDriver`) is
    /// refused with `superseded` while another replica holds the release's lease.
    @discardableResult
    public func setSplit(_ split: Split, route name: String, persist: Bool = true,
                         asReleaseDriver: Bool = false) async throws(RoutingError) -> Split {
        var before = split
        try await mutate(route: name, persist: persist, asReleaseDriver: asReleaseDriver) { entry throws(RoutingError) in
            if split.green > 0 && entry.route.pool(.green).instances.isEmpty { throw .noGreenInstances(name) }
            before = entry.route.split
            if entry.route.split != split {
                entry.route.split = split
                entry.picker = PoolPicker(split: split)
            }
        }
        return before
    }

    /// Gives a route a (new) green pool for a release; green gets no traffic until a split says
    /// so (a split giving the old green traffic becomes `allBlue`, by default all blue in the
    /// route file's terms). Refused when the route is unknown, green has no instances, or shares
    /// one with blue.
    public func setGreen(_ green: PoolSpec, route name: String, allBlue: Split? = nil) async throws(RoutingError) {
        try await mutate(route: name) { entry throws(RoutingError) in
            guard !green.instances.isEmpty else { throw .noGreenInstances(name) }
            if let shared = green.instances.first(where: entry.route.blue.instances.contains) {
                throw .instanceInBothPools(name, shared)
            }
            entry.route.green = green
            if entry.route.split.green > 0 {
                entry.route.split = allBlue ?? entry.file.allBlue
                entry.picker = PoolPicker(split: entry.route.split)
            }
            entry.health = PoolHealth(spec: entry.route.health, blue: entry.route.blue.instances, green: green.instances, keeping: entry.health)
        }
    }

    /// Promotes green: it becomes the route's blue (version, instances, counters and rotation),
    /// green is emptied and all traffic goes to the new blue, at `split` (by default all blue in
    /// the route file's terms, `6/0` for a plan `6/0 → 2/4 → 0/6`). Returns the old blue pool's
    /// upstreams, which the caller drains. Fenced like `setSplit` for a release's driver.
    public func promoteGreen(route name: String, split: Split? = nil, asReleaseDriver: Bool = false) async throws(RoutingError) -> [Upstream] {
        var oldBlue = PoolSpec(instances: [])
        try await mutate(route: name, asReleaseDriver: asReleaseDriver) { entry throws(RoutingError) in
            guard let green = entry.route.green, !green.instances.isEmpty else { throw .noGreenInstances(name) }
            oldBlue = entry.route.blue
            entry.route.blue = green
            entry.route.green = nil
            entry.route.split = split.flatMap { $0.isAllBlue ? $0 : nil } ?? entry.file.allBlue
            entry.picker = PoolPicker(split: entry.route.split)
            swap(&entry.blueRecorder, &entry.greenRecorder)
            swap(&entry.blueRotation, &entry.greenRotation)
            entry.greenRecorder = TrafficRecorder(shards: proxy.shardCount)
            entry.health = PoolHealth(spec: entry.route.health, blue: green.instances, green: [], keeping: entry.health)
        }
        return existingUpstreams(route: name, pool: oldBlue)
    }

    /// Replaces the instances of a route's pool (DNS discovery): health carries over for the
    /// instances that stay, the rotation and counters too. Refuses an empty set. Returns the
    /// upstreams no longer in the pool, for the caller to drain.
    public func setInstances(_ instances: [InstanceAddress], route name: String, pool color: PoolColor) async throws(RoutingError) -> [Upstream] {
        guard !instances.isEmpty else { throw .emptyPool(name, color) }
        var removed = PoolSpec(instances: [])
        try await mutate(route: name) { entry throws(RoutingError) in
            guard var pool = color == .blue ? Optional(entry.route.blue) : entry.route.green else { throw .noGreenInstances(name) }
            removed = pool
            removed.instances = pool.instances.filter { !instances.contains($0) }
            pool.instances = instances
            if color == .blue { entry.route.blue = pool } else { entry.route.green = pool }
            entry.health = PoolHealth(spec: entry.route.health, blue: entry.route.blue.instances,
                                      green: entry.route.pool(.green).instances, keeping: entry.health)
        }
        return existingUpstreams(route: name, pool: removed)
    }

    /// The upstream objects made so far for a pool's instances (for draining them).
    private func existingUpstreams(route name: String, pool: PoolSpec) -> [Upstream] {
        state.withLock { state in pool.instances.compactMap { state.upstreams[UpstreamKey(route: name, address: $0, tls: pool.tls)] } }
    }

    /// Changes one route: `change` runs on a copy of its state; the result is saved to the store
    /// (when there is one and `persist`), then put in place and published. Changes are serialized,
    /// so the store and the routing state see them in the same order; a change that is refused or
    /// cannot be saved leaves everything as it was.
    private func mutate(route name: String, persist: Bool = true, asReleaseDriver: Bool = false,
                        _ change: (inout RouteState) throws(RoutingError) -> Void) async throws(RoutingError) {
        try await mutations.withLock { () async throws(RoutingError) in
            var (index, entry) = try state.withLock { state throws(RoutingError) -> (Int, RouteState) in
                guard let index = state.routes.firstIndex(where: { $0.route.name == name }) else { throw .unknownRoute(name) }
                var entry = state.routes[index]
                try change(&entry)
                return (index, entry)
            }
            if persist, let store {
                do {
                    entry.revision = try await store.saveRoute(entry.route.record(file: entry.file, at: Date()), asReleaseDriver: asReleaseDriver)
                } catch StateStoreError.conflict {
                    throw .superseded(name)
                } catch {
                    throw .stateNotSaved("\(error)")
                }
            }
            state.withLock { $0.routes[index] = entry }
            await publish()
        }
    }

    /// Serves `stored`, a route's state saved by another replica (or by this one), when it is
    /// newer than what this replica serves and was made on the same route-file pools: split,
    /// pools, a promotion (green's counters and rotation become blue's). Not saved again.
    /// Returns whether anything changed.
    @discardableResult
    public func adopt(_ stored: StoredRoute) async -> Bool {
        await mutations.withLock {
            var before: Route?
            let adopted = state.withLock { state -> Bool in
                guard let index = state.routes.firstIndex(where: { $0.route.name == stored.record.route }) else { return false }
                var entry = state.routes[index]
                guard stored.revision > entry.revision else { return false }
                entry.revision = stored.revision
                defer { state.routes[index] = entry }
                guard let route = entry.file.applying(stored.record),
                      route.blue != entry.route.blue || route.green != entry.route.green || route.split != entry.route.split else { return false }
                if route.blue != entry.route.blue {
                    if let green = entry.route.green, green == route.blue {
                        swap(&entry.blueRecorder, &entry.greenRecorder)
                        swap(&entry.blueRotation, &entry.greenRotation)
                    } else {
                        entry.blueRecorder = TrafficRecorder(shards: proxy.shardCount)
                        entry.blueRotation = InstanceRotation()
                    }
                    entry.greenRecorder = TrafficRecorder(shards: proxy.shardCount)
                    entry.greenRotation = InstanceRotation()
                } else if route.green != entry.route.green {
                    entry.greenRecorder = TrafficRecorder(shards: proxy.shardCount)
                    entry.greenRotation = InstanceRotation()
                }
                if route.split != entry.route.split { entry.picker = PoolPicker(split: route.split) }
                before = entry.route
                entry.route.blue = route.blue
                entry.route.green = route.green
                entry.route.split = route.split
                entry.health = PoolHealth(spec: entry.route.health, blue: route.blue.instances, green: route.pool(.green).instances,
                                          keeping: entry.health)
                return true
            }
            guard adopted else { return false }
            await publish()
            // Instances no longer in either pool (the old blue after a promotion, a replaced
            // green) finish their requests and their idle connections close, as on the driver.
            if let before, let after = routes.first(where: { $0.name == stored.record.route }) {
                let kept = Set(after.blue.instances + after.pool(.green).instances)
                let gone = [before.blue, before.pool(.green)].flatMap { pool in
                    existingUpstreams(route: after.name, pool: PoolSpec(instances: pool.instances.filter { !kept.contains($0) }, tls: pool.tls))
                }
                proxy.drain(gone, timeout: .nanoseconds(proxy.configuration.drainTimeout.nanoseconds))
            }
            return true
        }
    }

    /// The store revision of the state a route is served with (0 when never saved or adopted).
    public func revision(route name: String) -> Int64 {
        state.withLock { state in state.routes.first { $0.route.name == name }?.revision ?? 0 }
    }

    /// The newest store revision this replica serves (over all routes).
    public var servedRevision: Int64 {
        state.withLock { state in state.routes.map(\.revision).max() ?? 0 }
    }

    /// The retries on blue of a route by reason, since it was loaded.
    public func retries(route name: String) -> [BlueRetryReason: UInt64] {
        guard let counts = state.withLock({ state in state.routes.first { $0.route.name == name }?.retries })?.snapshot() else { return [:] }
        return Dictionary(uniqueKeysWithValues: BlueRetryReason.allCases.map { ($0, counts[$0.rawValue]) })
    }

    /// The cumulative traffic counts of a route's pool.
    public func statistics(route name: String, pool color: PoolColor) -> PoolStatistics? {
        state.withLock { state in
            state.routes.first { $0.route.name == name }.map { (color == .blue ? $0.blueRecorder : $0.greenRecorder).snapshot() }
        }
    }

    /// The upstream objects of a route's pool as the data plane uses them (with their answer
    /// counts), in the pool's order; empty for an unknown route or an empty pool.
    public func upstreams(route name: String, pool color: PoolColor) -> [Upstream] {
        state.withLock { state in
            guard let entry = state.routes.first(where: { $0.route.name == name }) else { return [] }
            let pool = entry.route.pool(color)
            return pool.instances.map { Self.upstream(name, $0, tls: pool.tls, in: &state, shards: proxy.shardCount) }
        }
    }

    private static func upstream(_ route: String, _ address: InstanceAddress, tls: UpstreamTLS?, in state: inout State, shards: Int) -> Upstream {
        let key = UpstreamKey(route: route, address: address, tls: tls)
        if let existing = state.upstreams[key] { return existing }
        var client: UpstreamTLSClient?
        if let tls {
            client = state.tlsClients[tls] ?? UpstreamTLSClient(tls)
            state.tlsClients[tls] = client
        }
        let upstream = Upstream(address: address, shards: shards, tls: client)
        state.upstreams[key] = upstream
        return upstream
    }

    /// Feeds the recent-traffic windows (the health checker calls it every 250 ms).
    public func sampleRecentTraffic(at now: ContinuousClock.Instant = .now) {
        let samples = state.withLock { state in
            state.routes.map { entry in
                (entry.route.name, [entry.blueRecorder, entry.greenRecorder].map { (ObjectIdentifier($0), $0.snapshot()) })
            }
        }
        recent.withLock { recent in
            var sampled: [String: [ObjectIdentifier: StatisticsWindow]] = [:]
            for (name, pools) in samples {
                var windows: [ObjectIdentifier: StatisticsWindow] = [:]
                for (recorder, cumulative) in pools {
                    var window = recent[name]?[recorder] ?? StatisticsWindow()
                    window.record(cumulative: cumulative, at: now, epoch: epoch)
                    windows[recorder] = window
                }
                sampled[name] = windows
            }
            // Windows of counters no longer in use (a removed route or pool) go.
            recent = sampled
        }
    }

    /// A route pool's traffic over the last 10 s (as sampled), and that span.
    public func recentTraffic(route name: String, pool color: PoolColor, at now: ContinuousClock.Instant = .now) -> (PoolStatistics, Duration)? {
        let recorder = state.withLock { state in
            state.routes.first { $0.route.name == name }.map { ObjectIdentifier(color == .blue ? $0.blueRecorder : $0.greenRecorder) }
        }
        guard let recorder else { return nil }
        return recent.withLock { recent in
            recent[name]?[recorder].map { ($0.total(at: now), $0.span) }
        }
    }

    /// The health of one instance of a route.
    public func health(route name: String, instance: InstanceAddress) -> InstanceHealth? {
        state.withLock { state in state.routes.first { $0.route.name == name }?.health.instances[instance] }
    }

    /// Applies an active probe result, republishing when the instance changes state.
    public func recordProbe(route name: String, instance: InstanceAddress, result: ProbeResult, passed: Bool) {
        let change = state.withLock { state -> PoolHealth.Change? in
            guard let index = state.routes.firstIndex(where: { $0.route.name == name }) else { return nil }
            return state.routes[index].health.recordProbe(instance, passed: passed, detail: result.summary)
        }
        if let change { announce(change, route: name) }
    }

    /// Ends ejections whose time is over; called periodically.
    public func tick(now: ContinuousClock.Instant = .now) {
        let changes = state.withLock { state -> [(String, PoolHealth.Change)] in
            var all: [(String, PoolHealth.Change)] = []
            for index in state.routes.indices {
                all += state.routes[index].health.tick(at: now).map { (state.routes[index].route.name, $0) }
            }
            return all
        }
        for (route, change) in changes { announce(change, route: route) }
    }

    // MARK: UpstreamHealthReporter (called on event loops)

    public func requestFailed(route name: String, upstream: Upstream) {
        let change = state.withLock { state -> PoolHealth.Change? in
            guard let index = state.routes.firstIndex(where: { $0.route.name == name }) else { return nil }
            return state.routes[index].health.recordFailure(upstream.address, at: .now)
        }
        if let change { announce(change, route: name) }
    }

    public func requestSucceeded(route name: String, upstream: Upstream) {
        state.withLock { state in
            guard let index = state.routes.firstIndex(where: { $0.route.name == name }) else { return }
            state.routes[index].health.recordSuccess(upstream.address)
        }
    }

    // MARK: Snapshots

    private func announce(_ change: PoolHealth.Change, route: String) {
        switch change {
        case .probeDown(let address, let detail):
            logger.warning("instance failed health checks", metadata: ["route": "\(route)", "instance": "\(address)", "detail": "\(detail ?? "")"])
        case .probeUp(let address):
            logger.info("instance passed health checks", metadata: ["route": "\(route)", "instance": "\(address)"])
        case .ejected(let address, _):
            logger.warning("instance ejected after consecutive failures", metadata: ["route": "\(route)", "instance": "\(address)"])
        case .ejectionEnded(let address):
            logger.info("instance ejection ended", metadata: ["route": "\(route)", "instance": "\(address)"])
        case .ejectionRefusedLastInstance(let address):
            logger.error("instance keeps failing but is the last available one of its pool; not ejected",
                         metadata: ["route": "\(route)", "instance": "\(address)"])
            return
        }
        let snapshot = makeSnapshot(at: .now)
        Task { await proxy.publish(snapshot) }
    }

    private func makeSnapshot(at now: ContinuousClock.Instant) -> RoutingSnapshot {
        state.withLock { state in
            var runtimes: [RouteRuntime] = []
            for entry in state.routes {
                func pool(_ color: PoolColor) -> PoolRuntime {
                    let spec = entry.route.pool(color)
                    let all = spec.instances.map { Self.upstream(entry.route.name, $0, tls: spec.tls, in: &state, shards: proxy.shardCount) }
                    let available = all.filter { entry.health.isAvailable($0.address, at: now) }
                    return PoolRuntime(color: color, version: spec.version, all: all, available: available,
                                       rotation: color == .blue ? entry.blueRotation : entry.greenRotation,
                                       recorder: color == .blue ? entry.blueRecorder : entry.greenRecorder,
                                       latency: color == .blue ? entry.blueLatency : entry.greenLatency)
                }
                runtimes.append(RouteRuntime(name: entry.route.name, upstream: entry.route.upstream,
                                             picker: entry.picker, blue: pool(.blue), green: pool(.green),
                                             preview: entry.route.preview.map(PreviewMatcher.init),
                                             retryOnBlue: entry.route.retryOnBlue, retries: entry.retries,
                                             sticky: entry.route.sticky.map {
                                                 StickyMatcher($0, split: entry.route.split, blueVersion: entry.route.blue.version,
                                                               greenVersion: entry.route.green?.version)
                                             }))
            }
            return RoutingSnapshot(routes: runtimes, matches: state.routes.map(\.route.match), generation: proxy.nextGeneration())
        }
    }
}

/// A routing change that was refused.
public enum RoutingError: Error, Equatable, CustomStringConvertible {
    case unknownRoute(String)
    case noGreenInstances(String)
    case instanceInBothPools(String, InstanceAddress)
    case stateNotSaved(String)
    case emptyPool(String, PoolColor)
    /// A release's change refused by the shared store: another replica runs the release now.
    case superseded(String)

    public var description: String {
        switch self {
        case .instanceInBothPools(let name, let address): "route \(name): \(address) cannot be in both blue and green"
        case .unknownRoute(let name): "no route named \(name)"
        case .noGreenInstances(let name): "route \(name) has no green instances to send traffic to"
        case .stateNotSaved(let detail): "the change was not made: \(detail)"
        case .emptyPool(let name, let color): "route \(name): the \(color) pool cannot be left without instances"
        case .superseded(let name): "route \(name): another replica runs its release now (it holds the lease); the change was not made"
        }
    }
}

