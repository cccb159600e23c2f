import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TealAdmin
import TealConfig
import TealCore
import TealProxy
import TealStore
import TealStorePostgres
import UnixSignals

/// Settings of `teal serve`. Every value has a default (DESIGN.md's contract).
public struct ServeOptions: Sendable {
    /// A route file or a directory of them.
    public var routesPath = "routes"
    /// Proxy configuration (listen address, limits, timeouts).
    public var proxy = ProxyConfiguration()
    /// Admin API listener and token.
    public var admin = AdminConfiguration()
    /// The SQLite state file (created when missing), or a PostgreSQL database URL
    /// (`postgres://USER@HOST:PORT/DB`, see `PostgresStateConfiguration`).
    public var statePath = ".teal/state.sqlite"
    /// The PostgreSQL password (`--state-password-file`); `nil`: the one in the URL, if any.
    public var statePassword: String?
    /// Event loop threads; `nil` uses one per core.
    public var threads: Int?
    /// Replace the `teal serve` that holds the state file: listen beside it on the same ports,
    /// steer new connections here, signal it to drain, and continue its releases. SQLite only.
    public var takeover = false
    /// Certificates of the HTTPS listener (`proxy.tlsListenPort`); the first is the default.
    public var tlsCertificates: [TLSCertificatePair] = []
    /// How much of the journal the state file keeps (`--journal-max-age`, `--journal-max-entries`).
    public var journalRetention = JournalRetention()

    public init() {}
}

/// A running router: proxy, routing controller and health checker over one event loop group.
/// `teal serve` and the tests build the same thing.
public final class TealRouter: Sendable {
    public let proxy: ProxyServer
    public let controller: RoutingController
    /// Runs releases on the routes.
    public let releases: ReleaseController
    public let group: any EventLoopGroup
    /// Keeps DNS pools up to date (see `DNSDiscoveryService`).
    public let discovery: DNSDiscoveryService
    /// The Prometheus metrics (`GET /metrics`).
    public let metrics = TealMetrics()
    private let ownsGroup: Bool
    private let logger: Logger
    /// Releases stored by an earlier run, picked up by `start()`.
    private let storedReleases: [String: ReleaseRecord]
    /// Where the route files are, for reloads (`nil`: the routes came from code; no reload).
    public let routesPath: String?
    /// How long removed instances and old pools may take to finish their requests.
    let drainTimeout: Duration
    let store: (any StateStore)?
    /// When this router was made.
    public let startedAt = Date()
    /// The lock on the state file (with a state file).
    let stateLock: StateLock?
    /// The pid of the `teal serve` this one takes over from.
    let predecessor: Int32?

    /// Builds a router for `routes`; call `start()` to listen. With no `group`, one is made with
    /// `threads` event loops (default: one per core) and shut down by `shutdown()`.
    ///
    /// With a `store`, every run-time change is saved before it applies, and `stored` (what the
    /// store held at start-up) is reconciled with `routes`: a route whose file pools are those the
    /// stored state was made on gets its stored split and pools back; one whose file changed since
    /// is served as the file says (logged). Stored releases continue in `start()`. With `leases`
    /// (replicas sharing `store`), a release runs here only while this replica holds its lease.
    public init(routes: [Route], configuration: ProxyConfiguration, threads: Int? = nil,
                group: (any EventLoopGroup)? = nil, store: (any StateStore)? = nil, leases: (any ReleaseLeases)? = nil,
                stored: StoredState = StoredState(),
                routesPath: String? = nil, stateLock: StateLock? = nil, predecessor: Int32? = nil,
                tls: TLSTerminator? = nil, resolver: any InstanceResolver = SystemResolver(),
                journalRetention: JournalRetention = JournalRetention(), logger: Logger = Logger(label: "teal")) {
        self.routesPath = routesPath
        self.store = store
        self.stateLock = stateLock
        self.predecessor = predecessor
        self.drainTimeout = .nanoseconds(configuration.drainTimeout.nanoseconds)
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: threads ?? System.coreCount)
        self.ownsGroup = group == nil
        self.logger = logger
        self.storedReleases = stored.releases
        let serving = Self.reconcile(files: routes, stored: stored.routes, logger: logger)
        let reporter = ForwardingReporter()
        self.proxy = ProxyServer(configuration: configuration, group: self.group, snapshot: .empty,
                                 healthReporter: reporter, tls: tls, logger: logger)
        let controller = RoutingController(routes: serving, files: routes, proxy: proxy, metrics: metrics, store: store, logger: logger)
        self.controller = controller
        reporter.target.withLock { $0 = controller }
        let offline = store is any StateChangeFeed ? OfflineRollbacks(controller: controller, logger: logger) : nil
        self.releases = ReleaseController(routing: controller, proxy: proxy, group: self.group, metrics: metrics,
                                          store: store, leases: leases, offline: offline, retention: journalRetention, logger: logger)
        self.discovery = DNSDiscoveryService(controller: controller, releases: releases, proxy: proxy, drainTimeout: drainTimeout,
                                             resolver: resolver, logger: logger)
        let releases = self.releases
        self.follower = (store as? any StateChangeFeed).map {
            StateFollower(feed: $0, controller: controller, drives: { releases.drivenRoutes }, fleet: releases.fleet, offline: offline,
                          journal: { text, route in await releases.record(text, route: route, source: "replica") },
                          logger: logger)
        }
    }

    /// Follows the changes other replicas save, when the store is shared (PostgreSQL).
    public let follower: StateFollower?

    /// Loads the routes at `options.routesPath` and builds a router for them (no state file).
    public convenience init(options: ServeOptions, logger: Logger = Logger(label: "teal")) throws(ConfigError) {
        let routes = try RouteFileLoader.loadRoutes(at: options.routesPath)
        self.init(routes: routes, configuration: options.proxy, threads: options.threads, routesPath: options.routesPath, logger: logger)
    }

    /// Loads the routes at `options.routesPath`, opens the state file at `options.statePath` and
    /// builds a router that continues from it. Throws `ConfigError` for a bad route file and
    /// `StateStoreError` for a state file that cannot be used (corrupt, unreadable, newer schema):
    /// Teal then refuses to start rather than guess, because starting from the route files alone
    /// could flip a half-released route's users back to another version. `options.statePath` may
    /// instead be a `postgres://` URL: the database is then migrated and read the same way, and
    /// one that cannot be reached or logged in to is a `StateStoreError` naming it and the cause.
    public static func open(options: ServeOptions, logger: Logger = Logger(label: "teal")) async throws -> TealRouter {
        let routes = try RouteFileLoader.loadRoutes(at: options.routesPath)
        var tls: TLSTerminator?
        if options.proxy.tlsListenPort != nil {
            tls = try TLSTerminator(certificates: TLSCertificateSet(options.tlsCertificates),
                                    applicationProtocols: options.proxy.http2.enabled ? ["h2", "http/1.1"] : ["http/1.1"])
        }
        if PostgresStateConfiguration.isDatabaseURL(options.statePath) {
            return try await open(options: options, routes: routes, tls: tls, logger: logger)
        }
        let store = try SQLiteStateStore(path: options.statePath)
        let lock = try StateLock(path: options.statePath + ".lock")
        var predecessor: Int32?
        var configuration = options.proxy
        if !lock.tryLock() {
            guard options.takeover, let pid = lock.holder() else {
                throw StateLockError.inUse(statePath: options.statePath, pid: lock.holder())
            }
            predecessor = pid
            configuration.steerNewConnections = true
            logger.notice("taking over from the running teal serve", metadata: ["pid": "\(pid)"])
        }
        let stored = try await store.load()
        for name in stored.routes.keys.sorted() where !routes.contains(where: { $0.name == name }) {
            logger.warning("stored state of a route that is no longer in the route files is ignored", metadata: ["route": "\(name)"])
        }
        return TealRouter(routes: routes, configuration: configuration, threads: options.threads, store: store, stored: stored,
                          routesPath: options.routesPath, stateLock: lock, predecessor: predecessor, tls: tls,
                          journalRetention: options.journalRetention, logger: logger)
    }

    /// `open(options:)` on a PostgreSQL database: no file lock, since several replicas may share
    /// the database. Until the release driver lease lands, only one of them may run releases.
    private static func open(options: ServeOptions, routes: [Route], tls: TLSTerminator?, logger: Logger) async throws -> TealRouter {
        guard !options.takeover else { throw PostgresServeError.takeover }
        var configuration = try PostgresStateConfiguration(url: options.statePath)
        if let password = options.statePassword { configuration.password = password }
        let store = try await PostgresStateStore.open(configuration, logger: logger)
        let stored: StoredState
        do {
            stored = try await store.load()
        } catch {
            await store.close()
            throw error
        }
        for name in stored.routes.keys.sorted() where !routes.contains(where: { $0.name == name }) {
            logger.warning("stored state of a route that is no longer in the route files is ignored", metadata: ["route": "\(name)"])
        }
        logger.info("state in PostgreSQL", metadata: ["database": "\(configuration)"])
        return TealRouter(routes: routes, configuration: options.proxy, threads: options.threads, store: store, leases: store, stored: stored,
                          routesPath: options.routesPath, tls: tls, journalRetention: options.journalRetention, logger: logger)
    }

    /// The routes to serve: each file route with its stored run-time state when that state was
    /// made on the same file pools; otherwise the file route. Every decision is logged.
    static func reconcile(files: [Route], stored: [String: RouteRecord], logger: Logger) -> [Route] {
        files.map { route in
            guard let record = stored[route.name] else { return route }
            guard let restored = route.applying(record) else {
                logger.warning("route file changed since the state was saved: serving the route as the file says",
                               metadata: ["route": "\(route.name)", "stored split": "\(record.split)",
                                          "stored blue": "\(record.blue.version ?? "-")", "file split": "\(route.split)"])
                return route
            }
            if restored != route {
                logger.notice("route state restored from the stored state",
                              metadata: ["route": "\(route.name)", "split": "\(restored.split)", "blue": "\(restored.blue.version ?? "-")",
                                         "green": "\(restored.green?.version ?? "-")"])
            }
            return restored
        }
    }

    /// Publishes the routes and binds the listener; returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        // DNS pools get their instances before the first request.
        await discovery.refresh(force: true)
        await controller.publish()
        let address = try await proxy.start()
        var stored = storedReleases
        if let predecessor, let stateLock {
            // New connections come here now; the predecessor drains. It gives up the lock once it
            // has stopped its releases, and they continue here from their latest checkpoints.
            kill(predecessor, SIGTERM)
            if await stateLock.waitForLock(timeout: .seconds(15)) {
                logger.notice("took over from the previous teal serve", metadata: ["pid": "\(predecessor)"])
                if let latest = try? await store?.load() { stored = latest.releases }
            } else {
                logger.error("the previous teal serve did not give up the state file in 15 s; its releases are not continued here",
                             metadata: ["pid": "\(predecessor)"])
                stored = [:]
            }
        }
        await releases.restore(stored)
        // Routes whose policy says `autoStart` release their green pool right away, unless that
        // green was released already (a restart does not retry a rolled-back release).
        for route in controller.routes {
            guard let policy = route.rollout, policy.autoStart, let green = route.green, !green.instances.isEmpty,
                  storedReleases[route.name].map({ !$0.spec.green.isSameDefinition(as: green) }) ?? true else { continue }
            try await releases.start(ReleaseSpec(route: route.name, green: green, policy: policy), by: "route-file")
        }
        return address
    }

    /// Re-reads the route files and applies them (see `RoutingController.reload`), asked for by
    /// `requester` (its first word is the journal's source). A file with an error is refused with
    /// that error (`ConfigError`, naming file, line and key) and nothing changes. Releases whose
    /// route went away or whose green pool the files changed are aborted; instances no longer
    /// routed to are drained in the background.
    @discardableResult
    public func reload(by requester: String) async throws -> ReloadSummary {
        guard let routesPath else { throw ConfigError(file: "", line: nil, message: "this router has no route files to reload") }
        let files: [Route]
        do {
            files = try RouteFileLoader.loadRoutes(at: routesPath)
            // Certificates are re-read too; a bad one keeps the running ones (and the routes).
            try proxy.tls?.reload()
        } catch {
            logger.error("reload refused: the running routes and certificates stay", metadata: ["error": "\(error)"])
            throw error
        }
        let (summary, gone) = try await controller.reload(files, resolved: await discovery.resolveNow(files))
        let source = JournalEntry.source(of: requester)
        for (names, what) in [(summary.added, "added"), (summary.changed, "changed"), (summary.removed, "removed")] {
            for name in names { await releases.record("route \(what) by a reload of the route files (by \(requester))", route: name, source: source) }
        }
        logger.notice("route files reloaded", metadata: ["added": "\(summary.added)", "changed": "\(summary.changed)",
                                                          "removed": "\(summary.removed)", "unchanged": "\(summary.unchanged.count)"])
        await releases.routesChanged(by: requester)
        drain(gone)
        return summary
    }

    /// Drains upstreams no longer routed to, in the background: once their in-flight requests
    /// are done (or the drain timeout passed) their idle connections are closed.
    public func drain(_ upstreams: [Upstream]) {
        proxy.drain(upstreams, timeout: drainTimeout)
    }

    /// The health checker service for this router.
    public var healthChecker: HealthChecker { HealthChecker(controller: controller, group: group) }

    /// Drains and stops the proxy, then the event loops if the router made them.
    public func shutdown() async {
        releases.stopAll()
        stateLock?.unlock()  // a successor may continue the releases now
        await proxy.shutdown()
        await (store as? PostgresStateStore)?.close()
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// Runs until SIGINT or SIGTERM, then drains in-flight requests and returns. With `admin`,
    /// the admin API runs too (refused, with the reason, on a non-loopback address without a token).
    public func run(admin: AdminConfiguration? = nil) async throws {
        var services: [any Service] = [ProxyService(router: self), healthChecker, ReloadOnHangup(router: self, logger: logger), discovery,
                                       JournalPruning(releases: releases)]
        if let follower { services.append(follower) }
        if releases.leases != nil { services.append(LeaseKeeping(releases: releases)) }
        DescriptorBudget.prepare(proxyConnections: proxy.configuration.maxConnections,
                                 adminConnections: admin?.maxConnections ?? 0, logger: logger)
        if let admin {
            follower?.setAdminAddress(admin.host.contains(":") ? "[\(admin.host)]:\(admin.port)" : "\(admin.host):\(admin.port)")
            let backend = RouterAdminBackend(router: self, token: admin.token, routeLabel: admin.alertRouteLabel), logger = self.logger
            // A rollback made here while the store was away goes to the release wherever it runs.
            follower?.setAlerter { route, name in _ = await backend.alert(route: route, name: name) }
            try admin.validate()
            // Taking over, the predecessor holds the admin port until it starts draining.
            services.append(RetryingBind(retryFor: predecessor == nil ? .zero : drainTimeout + .seconds(5), logger: logger) {
                try AdminServer.application(backend: backend, configuration: admin, logger: logger)
            })
        }
        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await serviceGroup.run()
    }
}

/// Why `teal serve` cannot start on a PostgreSQL state.
public enum PostgresServeError: Error, CustomStringConvertible {
    case takeover

    public var description: String {
        switch self {
        case .takeover:
            "--takeover works only with a SQLite state file: on PostgreSQL there is no file lock to take over; "
                + "start the new teal serve beside the old one (on other ports) and stop the old one"
        }
    }
}

/// Runs a listening service, starting it again while its address is still in use (for at most
/// `retryFor`).
struct RetryingBind: Service {
    let retryFor: Duration
    let logger: Logger
    let make: @Sendable () throws -> any Service

    func run() async throws {
        let deadline = ContinuousClock.now + retryFor
        var logged = false
        while true {
            do {
                try await make().run()
                return
            } catch where Self.isAddressInUse(error) && ContinuousClock.now < deadline && !Task.isShuttingDownGracefully {
                if !logged { logger.notice("admin address in use; retrying until the previous teal serve lets it go") }
                logged = true
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    static func isAddressInUse(_ error: any Error) -> Bool {
        if let error = error as? IOError, error.errnoCode == EADDRINUSE { return true }
        return "\(error)".contains("Address already in use")
    }
}

/// Prunes the stored journal at start-up and then as `JournalPruneSchedule` says (checked every
/// minute; appends trigger it too), until shutdown.
struct JournalPruning: Service {
    let releases: ReleaseController

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                releases.pruneJournalIfDue(appended: 0)
                try? await Task.sleep(for: .seconds(60))
            }
        }
    }
}

/// Reloads the route files on every SIGHUP until shutdown.
struct ReloadOnHangup: Service {
    let router: TealRouter
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                logger.notice("SIGHUP: reloading the route files")
                _ = try? await router.reload(by: "signal (SIGHUP)")
            }
        }
    }
}

/// Runs the proxy inside a `ServiceGroup`: starts it, waits for graceful shutdown, drains it.
struct ProxyService: Service {
    let router: TealRouter

    func run() async throws {
        try await router.start()
        try? await gracefulShutdown()
        await router.shutdown()
    }
}

/// Lets the proxy be built before the controller that receives its health reports.
private final class ForwardingReporter: UpstreamHealthReporter {
    let target = Mutex<RoutingController?>(nil)

    func requestFailed(route: String, upstream: Upstream) {
        target.withLock { $0 }?.requestFailed(route: route, upstream: upstream)
    }

    func requestSucceeded(route: String, upstream: Upstream) {
        target.withLock { $0 }?.requestSucceeded(route: route, upstream: upstream)
    }
}
