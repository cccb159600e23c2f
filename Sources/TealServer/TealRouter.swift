import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TealAdmin
import TealConfig
import TealCore
import TealProxy

/// Settings of `teal serve`. Every value has a default (DESIGN.md's contract).
public struct ServeOptions: Sendable {
    /// A route file or a directory of them.
    public var routesPath = "routes"
    /// Proxy configuration (listen address, limits, timeouts).
    public var proxy = ProxyConfiguration()
    /// Admin API listener and token.
    public var admin = AdminConfiguration()
    /// State file; accepted now, used once durable state exists.
    public var statePath = ".teal/state.sqlite"
    /// Event loop threads; `nil` uses one per core.
    public var threads: Int?

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
    /// The Prometheus metrics (`GET /metrics`).
    public let metrics = TealMetrics()
    private let ownsGroup: Bool
    private let logger: Logger

    /// Builds a router for `routes`; call `start()` to listen. With no `group`, one is made with
    /// `threads` event loops (default: one per core) and shut down by `shutdown()`.
    public init(routes: [Route], configuration: ProxyConfiguration, threads: Int? = nil,
                group: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "teal")) {
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: threads ?? System.coreCount)
        self.ownsGroup = group == nil
        self.logger = logger
        let reporter = ForwardingReporter()
        self.proxy = ProxyServer(configuration: configuration, group: self.group, snapshot: .empty,
                                 healthReporter: reporter, logger: logger)
        let controller = RoutingController(routes: routes, proxy: proxy, metrics: metrics, logger: logger)
        self.controller = controller
        reporter.target.withLock { $0 = controller }
        self.releases = ReleaseController(routing: controller, proxy: proxy, group: self.group, metrics: metrics, logger: logger)
    }

    /// Loads the routes at `options.routesPath` and builds a router for them.
    public convenience init(options: ServeOptions, logger: Logger = Logger(label: "teal")) throws(ConfigError) {
        let routes = try RouteFileLoader.loadRoutes(at: options.routesPath)
        self.init(routes: routes, configuration: options.proxy, threads: options.threads, logger: logger)
    }

    /// Publishes the routes and binds the listener; returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        await controller.publish()
        let address = try await proxy.start()
        // Routes whose policy says `autoStart` release their green pool right away.
        for route in controller.routes {
            guard let policy = route.rollout, policy.autoStart, let green = route.green, !green.instances.isEmpty else { continue }
            try await releases.start(ReleaseSpec(route: route.name, green: green, policy: policy), by: "route-file")
        }
        return address
    }

    /// The health checker service for this router.
    public var healthChecker: HealthChecker { HealthChecker(controller: controller, group: group) }

    /// Drains and stops the proxy, then the event loops if the router made them.
    public func shutdown() async {
        releases.stopAll()
        await proxy.shutdown()
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// Runs until SIGINT or SIGTERM, then drains in-flight requests and returns. With `admin`,
    /// the admin API runs too (refused, with the reason, on a non-loopback address without a token).
    public func run(admin: AdminConfiguration? = nil) async throws {
        var services: [any Service] = [ProxyService(router: self), healthChecker]
        if let admin {
            services.append(try AdminServer.application(backend: RouterAdminBackend(router: self), configuration: admin, logger: logger))
        }
        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await serviceGroup.run()
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
