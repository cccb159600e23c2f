import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TealCore

/// Keeps a replica on the route state that any replica saves to a shared store: it listens to
/// the store's change feed and serves each announced route save (reading the route's stored
/// state, then `RoutingController.adopt`), and reads everything again every `resyncInterval` and
/// whenever the feed (re)connects, so a missed announcement or an outage cannot leave the
/// replica on stale state. The store is never on the request path: while it is away the replica
/// serves what it has, and the feed reconnects with backoff (100 ms doubling to 5 s).
public final class StateFollower: Service, Sendable {
    private struct Status {
        var up = false
        var outageLogged = false
        /// A full read of the stored state succeeded since start-up.
        var synced = false
        /// When the store last answered (a resync, or this replica's traffic published).
        var contact: ContinuousClock.Instant?
    }

    private let feed: any StateChangeFeed
    private let controller: RoutingController
    private let resyncInterval: Duration
    private let logger: Logger
    private let status = Mutex(Status())
    /// This replica as it reports itself to the store (`ReplicaRegistry`) every `reportInterval`.
    public let replicaID: String
    private let startedAt = Date()
    private let adminAddress = Mutex("")
    private let drives: @Sendable () -> [String]
    static let reportInterval = Duration.seconds(1)
    /// A replica not heard from for this long is not listed any more.
    public static let replicaTimeout = Duration.seconds(5)

    /// The other replicas' counts of the routes this one runs releases of, read every
    /// `trafficInterval` (when the store is a `TrafficExchange`).
    private let fleet: FleetTraffic?
    static let trafficInterval = Duration.milliseconds(100)
    /// Without an answer from the store for this long, it counts as away (`OfflineRollbacks`).
    static let awayAfter = Duration.milliseconds(1500)
    private let offline: OfflineRollbacks?
    private let journal: @Sendable (String, String) async -> Void
    private let alerter = Mutex<(@Sendable (String, String) async -> Void)?>(nil)

    /// `drives` tells which routes' releases this replica runs; `fleet` receives the other
    /// replicas' traffic counts of those routes.
    /// `offline` keeps the releases safe by this replica's own traffic while the store is away;
    /// `journal(text, route)` records what it did once the store is back.
    public init(feed: any StateChangeFeed, controller: RoutingController, resyncInterval: Duration = .seconds(5),
                drives: @escaping @Sendable () -> [String] = { [] }, fleet: FleetTraffic? = nil, offline: OfflineRollbacks? = nil,
                journal: @escaping @Sendable (String, String) async -> Void = { _, _ in }, logger: Logger = Logger(label: "teal.state")) {
        self.feed = feed
        self.offline = offline
        self.journal = journal
        self.fleet = fleet
        self.controller = controller
        self.resyncInterval = resyncInterval
        self.drives = drives
        self.logger = logger
        replicaID = (feed as? any ReplicaRegistry)?.replicaID ?? String(UUID().uuidString.lowercased().prefix(13))
    }

    /// How a rollback made here while the store was away is passed to its release (an alert,
    /// `(route, name)`, to the replica that runs it).
    public func setAlerter(_ alert: @escaping @Sendable (String, String) async -> Void) {
        alerter.withLock { $0 = alert }
    }

    /// The admin API address this replica reports (`host:port`).
    public func setAdminAddress(_ address: String) {
        adminAddress.withLock { $0 = address }
    }

    /// This replica's record as it reports it now.
    public var record: ReplicaRecord {
        ReplicaRecord(id: replicaID, admin: adminAddress.withLock { $0 }, revision: controller.servedRevision, drives: drives(),
                      startedAt: startedAt)
    }

    /// Whether the change feed is connected now.
    public var isUp: Bool { status.withLock { $0.up } }
    /// Whether this replica has read the whole stored state since it started (it stays so while
    /// the database is away: it serves the last state it had).
    public var hasSynced: Bool { status.withLock { $0.synced } }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.follow() }
                group.addTask { await self.resyncPeriodically() }
                group.addTask { await self.reportPeriodically() }
                group.addTask { await self.exchangeTraffic() }
                group.addTask { await self.guardReleases() }
            }
        }
        // Leaving the list is a courtesy (a replica not heard from drops off it after
        // `replicaTimeout`): it does not hold up shutdown when the store is slow or away.
        if let registry = feed as? any ReplicaRegistry, isUp {
            let id = replicaID
            await Self.waiting(atMost: .seconds(1)) { try? await registry.forget(replica: id) }
        }
    }

    private func reportPeriodically() async {
        guard let registry = feed as? any ReplicaRegistry else { return }
        while !Task.isCancelled {
            let record = self.record
            await Self.waiting(atMost: Self.reportInterval) { try? await registry.report(record) }
            try? await Task.sleep(for: Self.reportInterval)
        }
    }

    /// Every `trafficInterval`: publishes this replica's counts of the routes that have a green
    /// pool (a release may be judging them), and reads the others' counts of the routes whose
    /// release this replica runs. Only counters the data plane keeps anyway are read.
    private func exchangeTraffic() async {
        guard let exchange = feed as? any TrafficExchange else { return }
        while !Task.isCancelled {
            let reports = controller.routes.filter { $0.green != nil }.compactMap { route -> TrafficReport? in
                guard let blue = controller.statistics(route: route.name, pool: .blue),
                      let green = controller.statistics(route: route.name, pool: .green) else { return nil }
                return TrafficReport(route: route.name, blue: blue, green: green)
            }
            let driven = drives()
            let fleet = self.fleet
            await Self.waiting(atMost: .seconds(1)) {
                if (try? await exchange.publishTraffic(reports)) != nil, !reports.isEmpty {
                    self.status.withLock { $0.contact = .now }
                }
                guard let fleet, !driven.isEmpty else { return }
                if let latest = try? await exchange.othersTraffic(routes: driven, within: FleetTraffic.maxAge) {
                    fleet.update(routes: driven, latest: latest)
                }
            }
            try? await Task.sleep(for: Self.trafficInterval)
        }
    }

    /// Whether the store counts as away: the change feed is down, or the store has not answered
    /// for `awayAfter` (a hung database keeps the feed's connection open).
    public func storeAway(at now: ContinuousClock.Instant = .now) -> Bool {
        status.withLock { status in
            guard status.synced else { return false }  // nothing known to guard yet
            return !status.up || status.contact.map { now - $0 > Self.awayAfter } ?? false
        }
    }

    /// Every `trafficInterval`: while the store is away, the releases this replica does not drive
    /// are judged by its own traffic (`OfflineRollbacks`); once it is back, what was rolled back
    /// meanwhile is journaled and passed to the release.
    private func guardReleases() async {
        guard let offline else { return }
        let store = feed as? any StateStore
        while !Task.isCancelled {
            let now = ContinuousClock.now
            if storeAway(at: now) {
                await offline.judge(driven: Set(drives()), at: now)
            } else {
                offline.storeBack()
                if !offline.pendingRoutes.isEmpty {
                    let alert = alerter.withLock { $0 }
                    await Self.waiting(atMost: .seconds(5)) { [journal] in
                        await offline.report(at: now, record: { text, route in await journal(text, route) }, ask: { route, name in
                            await alert?(route, name)
                            guard let store, let stored = try? await store.load() else { return false }
                            return stored.releases[route].map(\.checkpoint.isFinal) ?? true
                        })
                    }
                }
            }
            try? await Task.sleep(for: Self.trafficInterval)
        }
    }

    /// Starts `operation` and waits for it at most `limit` (a store call waits up to its own
    /// timeout while the database is away; this caller must not).
    static func waiting(atMost limit: Duration, _ operation: @escaping @Sendable () async -> Void) async {
        final class Waiter: Sendable {
            let continuation: Mutex<CheckedContinuation<Void, Never>?>
            init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = Mutex(continuation) }
            func resume() { continuation.withLock { $0.take() }?.resume() }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiter = Waiter(continuation)
            Task {
                await operation()
                waiter.resume()
            }
            Task {
                try? await Task.sleep(for: limit)
                waiter.resume()
            }
        }
    }

    private func follow() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await feed.followChanges(listening: { [self] in
                    connected()
                    await resync()
                }, changed: { [self] route, revision in
                    await fetch(route: route, revision: revision)
                })
            } catch {
                lost(error)
            }
            if status.withLock({ $0.up }) { backoff = .milliseconds(100) }
            status.withLock { $0.up = false }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    private func resyncPeriodically() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: resyncInterval)
            if !Task.isCancelled { await resync() }
        }
    }

    private func connected() {
        let wasDown = status.withLock { status -> Bool in
            defer { status.up = true; status.outageLogged = false }
            return status.outageLogged
        }
        if wasDown { logger.notice("state change feed connected again; catching up") }
    }

    private func lost(_ error: any Error) {
        let first = status.withLock { status -> Bool in
            defer { status.outageLogged = true }
            return !status.outageLogged
        }
        if first { logger.warning("state change feed lost; serving the last state while reconnecting", metadata: ["cause": "\(error)"]) }
    }

    /// Serves the stored state of `route` when the announced revision is newer than what this
    /// replica serves (its own saves are not read back).
    private func fetch(route: String, revision: Int64) async {
        guard revision > controller.revision(route: route) else { return }
        do {
            if let stored = try await feed.storedRoute(route) { await adopt(stored) }
        } catch {
            logger.warning("cannot read the state of a changed route; the next resync retries", metadata: ["route": "\(route)", "cause": "\(error)"])
        }
    }

    /// Reads every route's stored state and serves what is newer.
    public func resync() async {
        do {
            for stored in try await feed.storedRoutes() { await adopt(stored) }
            if let offline, let store = feed as? any StateStore { offline.known(try await store.load().releases) }
            status.withLock { status in
                status.synced = true
                status.contact = .now
            }
        } catch {
            logger.debug("state resync failed", metadata: ["cause": "\(error)"])
        }
    }

    private func adopt(_ stored: StoredRoute) async {
        if await controller.adopt(stored) {
            // A release's step or start changed the route: its release may be new here.
            if let offline, let store = feed as? any StateStore, let state = try? await store.load() { offline.known(state.releases) }
            logger.info("serving route state saved by a replica", metadata: [
                "route": "\(stored.record.route)", "revision": "\(stored.revision)", "split": "\(stored.record.split)",
            ])
        }
    }
}
