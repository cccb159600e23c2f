import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TealCore
import TealProxy

/// `teal demo`: starts 6 blue and 6 green demo backends in this process, the router in front of
/// them and a steady load generator, then releases green by `6/0 → 6/1 → 2/4 → 0/6` through the
/// release controller (smoke gate, live verdicts, automatic rollback, promotion and drain) and
/// prints, twice a second, the split, per-pool request rates, error rates and p99, and the
/// release's events; it ends with a summary.
public struct TealDemo: Sendable {
    public struct Options: Sendable {
        public var listenPort = 8080
        public var greenErrorRate = 0.0
        public var stepSeconds = 4.0
        public var steps: [Split] = [Split(blue: 6, green: 0)!, Split(blue: 6, green: 1)!, Split(blue: 2, green: 4)!, Split(blue: 0, green: 6)!]
        public var workers = 8

        public init() {}
    }

    /// What the demo measured.
    public struct Summary: Sendable {
        public var outcome: String
        public var requests: Int
        public var failedForUsers: Int
        /// From the first failing green answer the load generator saw to the rollback.
        public var faultToRollback: Duration?
    }

    private let options: Options
    private let output: @Sendable (String) -> Void

    public init(options: Options, output: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.options = options
        self.output = output
    }

    /// Runs the demo to the end.
    @discardableResult
    public func run() async throws -> Summary {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var backends: [DemoBackend] = []
        var blue: [InstanceAddress] = [], green: [InstanceAddress] = []
        for index in 1...12 {
            let isGreen = index > 6
            let name = isGreen ? "green-\(index - 6)" : "blue-\(index)"
            let backend = DemoBackend(options: .init(name: name, errorRate: isGreen ? options.greenErrorRate : 0), group: group)
            let address = try await backend.start()
            backends.append(backend)
            let instance = InstanceAddress(host: "127.0.0.1", port: address.port!)
            if isGreen { green.append(instance) } else { blue.append(instance) }
        }
        var policy = RolloutPolicy(steps: options.steps.map { PlanStep(split: $0) })
        policy.hold = .milliseconds(Int64(options.stepSeconds * 1000))
        policy.smoke = [SmokeRequest(path: "/healthz")]
        policy.rollback.maxErrorRate = 0.05
        policy.rollback.minRequests = 50
        policy.rollback.maxP99 = .milliseconds(800)
        var route = Route(name: "demo", blue: PoolSpec(version: "1.0.0", instances: blue), split: policy.allBlue, rollout: policy)
        route.health.enabled = false
        // The demo's failing instances answer 500: blue answers those requests instead.
        route.retryOnBlue.on500 = true
        var configuration = ProxyConfiguration()
        configuration.listenPort = options.listenPort
        let logger = Logger(label: "teal.demo", factory: { _ in SwiftLogNoOpLogHandler() })
        var router = TealRouter(routes: [route], configuration: configuration, group: group, logger: logger)
        let address: SocketAddress
        do {
            address = try await router.start()
        } catch {
            configuration.listenPort = 0  // the usual port is taken: use any free one
            router = TealRouter(routes: [route], configuration: configuration, group: group, logger: logger)
            address = try await router.start()
        }
        output("teal demo: router on http://127.0.0.1:\(address.port!)/ in front of 6 blue (1.0.0) instances; releasing 6 green (1.1.0)"
            + (options.greenErrorRate > 0 ? " that fail \(Int(options.greenErrorRate * 100))% of requests" : ""))
        let target = InstanceAddress(host: "127.0.0.1", port: address.port!)
        let counts = DemoCounts()
        let workers = options.workers
        let load = Task {
            await withTaskGroup(of: Void.self) { tasks in
                for _ in 0..<workers {
                    tasks.addTask {
                        while !Task.isCancelled {
                            let result = try? await HTTPProbe.send(path: "/", to: target, timeout: .seconds(2), keepBody: true,
                                                                   on: group.next()).get()
                            counts.add(result)
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        // Green's first failure as Teal saw it (users may never see one: blue answers them).
        let greenFailures = router.controller.statistics(route: "demo", pool: .green)?.errors ?? 0
        let firstGreenFailure = Task { () -> ContinuousClock.Instant? in
            while !Task.isCancelled {
                if (router.controller.statistics(route: "demo", pool: .green)?.errors ?? 0) > greenFailures { return .now }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return nil
        }
        try await router.releases.start(ReleaseSpec(route: "demo", green: PoolSpec(version: "1.1.0", instances: green), policy: policy),
                                        drainTimeout: .seconds(5))
        var shownEvents = 0
        var previous = (blue: router.controller.statistics(route: "demo", pool: .blue)!, green: router.controller.statistics(route: "demo", pool: .green)!)
        let deadline = ContinuousClock.now + .seconds(Int64(options.stepSeconds * Double(options.steps.count)) + 30)
        var state = router.releases.state(route: "demo")
        while let current = state, !current.isFinal, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
            for event in await router.releases.events(route: "demo").dropFirst(shownEvents) {
                output("  event: \(event.text)")
                shownEvents += 1
            }
            state = router.releases.state(route: "demo")
            if state?.isFinal == true { break }  // promotion swaps the pools' counters: no rate line
            let routeNow = router.controller.routes[0]
            let now = (blue: router.controller.statistics(route: "demo", pool: .blue)!, green: router.controller.statistics(route: "demo", pool: .green)!)
            output(Self.line(state: router.releases.state(route: "demo"), split: routeNow.split,
                             blue: Self.delta(now.blue, since: previous.blue), green: Self.delta(now.green, since: previous.green),
                             seconds: 0.5))
            previous = now
        }
        for event in await router.releases.events(route: "demo").dropFirst(shownEvents) { output("  event: \(event.text)") }
        load.cancel()
        await load.value
        let total = counts.total
        var summary = Summary(outcome: state?.name ?? "unknown", requests: total.requests, failedForUsers: total.errors)
        firstGreenFailure.cancel()
        let faults = [counts.firstGreenFailure, await firstGreenFailure.value].compactMap { $0 }
        if case .rolledBack(_, let at)? = state, let fault = faults.min() {
            summary.faultToRollback = at - fault
        }
        let retried = router.controller.retries(route: "demo").values.reduce(0, +)
        if retried > 0 { output("teal demo: \(retried) requests green failed were answered by blue") }
        output("teal demo: \(summary.outcome). Requests served: \(summary.requests); failed for users: \(summary.failedForUsers)"
            + (summary.faultToRollback.map { "; first green failure to all-blue: \(Self.milliseconds($0)) ms" } ?? ""))
        await router.shutdown()
        for backend in backends { await backend.stop() }
        try await group.shutdownGracefully()
        return summary
    }

    /// Counts since `earlier`; promotion swaps the pools' counters, after which the newer counts
    /// start afresh.
    static func delta(_ now: PoolStatistics, since earlier: PoolStatistics) -> PoolStatistics {
        now.requests >= earlier.requests ? now.subtracting(earlier) : now
    }

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    static func line(state: RolloutMachine.State?, split: Split, blue: PoolStatistics, green: PoolStatistics, seconds: Double) -> String {
        let width = 24
        let greenCells = Int((split.greenFraction * Double(width)).rounded())
        let bar = String(repeating: "█", count: width - greenCells) + String(repeating: "▒", count: greenCells)
        func pool(_ stats: PoolStatistics) -> String {
            let rate = Int(Double(stats.requests) / seconds)
            let errors = String(format: "%.1f", stats.errorRate * 100)
            let p99 = stats.latency(quantile: 0.99).map { "\(milliseconds($0))ms" } ?? "-"
            return "\(rate) req/s, \(errors)% err, p99 \(p99)"
        }
        let name = (state?.name ?? "idle").padding(toLength: 13, withPad: " ", startingAt: 0)
        let splitText = split.description.padding(toLength: 5, withPad: " ", startingAt: 0)
        return "\(name) \(splitText) blue \(bar) green | blue \(pool(blue)) | green \(pool(green))"
    }
}

/// Counts what the demo's load generator saw.
private final class DemoCounts: Sendable {
    private struct Counts { var requests = 0, errors = 0, firstGreenFailure: ContinuousClock.Instant? }
    private let state = NIOLockedValueBox(Counts())

    func add(_ result: ProbeResult?) {
        let failed = (result?.status ?? 500) >= 500
        let green = result?.body?.hasPrefix("green") ?? false
        let now = ContinuousClock.now
        state.withLockedValue { counts in
            counts.requests += 1
            if failed { counts.errors += 1 }
            if failed && green && counts.firstGreenFailure == nil { counts.firstGreenFailure = now }
        }
    }

    var total: (requests: Int, errors: Int) { state.withLockedValue { ($0.requests, $0.errors) } }
    var firstGreenFailure: ContinuousClock.Instant? { state.withLockedValue { $0.firstGreenFailure } }
}
