import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOPosix
import Synchronization
import Testing
import TealAdmin
import TealServer
import TealTestSupport

/// Demo backends in this process and a `teal serve` child process routing to them, with a
/// route file written for the test.
final class ServedRouter: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let backends: [String: DemoBackend]
    let ports: [String: Int]
    let proxyPort: Int
    let adminPort: Int
    let directory: URL
    private(set) var server: TealProcess
    let serveArguments: [String]

    /// Backends `blue`, `blue2`, `green` (healthy), `bad` (every answer a 500) and `slow` (every
    /// answer after 1.5 s); the route `shop` has `blue` in its blue pool and
    /// releases by `plan` holding `hold` per step.
    /// `instances` names more instances (by port) that `blue` and `green` may use. `state` is the
    /// `--state` value (default: a state file in the router's folder).
    init(extraArguments: [String] = [], tlsArguments: [String] = [], plan: String = "[1/1, 0/1]", hold: String = "1s",
         green: String = "green", autoStart: Bool = false, blue: [String] = ["blue"], instances: [String: Int] = [:],
         state: String? = nil) async throws {
        var backends: [String: DemoBackend] = [:]
        var ports = instances
        for (name, errorRate, latency) in [("blue", 0.0, 0), ("blue2", 0.0, 0), ("green", 0.0, 0), ("bad", 1.0, 0), ("slow", 0.0, 1500)] {
            let backend = DemoBackend(options: .init(name: name, errorRate: errorRate, latency: .milliseconds(latency)), group: group)
            ports[name] = try await backend.start().port
            backends[name] = backend
        }
        self.backends = backends
        self.ports = ports
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        settings = RouteSettings(green: green, plan: plan, hold: hold, autoStart: autoStart)
        try Self.writeRoutes(in: directory, ports: ports, settings: settings, blue: blue)
        // Free ports can be taken by a test running beside this one before teal binds them:
        // teal then refuses to start (address in use) and it is tried again on other ports.
        var attempt = 0
        while true {
            let proxy = try freePort(), admin = try freePort(), tls = tlsArguments.isEmpty ? nil : try freePort()
            let arguments = ["serve", "--routes", directory.path, "--listen", "127.0.0.1:\(proxy)",
                             "--admin", "127.0.0.1:\(admin)", "--state", state ?? directory.appendingPathComponent("state.sqlite").path,
                             "--threads", "1"] + (tls.map { ["--tls-listen", "127.0.0.1:\($0)"] + tlsArguments } ?? []) + extraArguments
            let process = try TealProcess(arguments)
            do {
                try await process.waitUntilServing(port: admin)
                try await process.waitUntilListening(port: proxy)
                if let tls { try await process.waitUntilListening(port: tls) }
                (proxyPort, adminPort, tlsPort, serveArguments, server) = (proxy, admin, tls, arguments, process)
                return
            } catch {
                attempt += 1
                let inUse = process.log.contains("is in use by another program") || process.log.contains("already listens") || process.log.contains("Address already in use")
                process.send(SIGKILL)
                _ = await process.waitForExit(timeout: .seconds(5))
                if !inUse || attempt >= 3 { throw error }
            }
        }
    }

    /// The HTTPS port, when started with `tlsArguments`.
    let tlsPort: Int?

    struct RouteSettings {
        var green: String
        var plan: String
        var hold: String
        var autoStart: Bool
    }

    private let settings: RouteSettings

    /// (Re)writes the route file of `shop` with these backends in its blue pool; `extra` is
    /// appended verbatim.
    func writeRoutes(blue: [String], extra: String = "") throws {
        try Self.writeRoutes(in: directory, ports: ports, settings: settings, blue: blue, extra: extra)
    }

    static func writeRoutes(in directory: URL, ports: [String: Int], settings: RouteSettings, blue: [String], extra: String = "") throws {
        let instances = blue.map { "\"127.0.0.1:\(ports[$0]!)\"" }.joined(separator: ", ")
        let routes = """
            route: shop
            blue: {version: "1.0", instances: [\(instances)]}
            green: {version: "1.1", instances: ["127.0.0.1:\(ports[settings.green]!)"]}
            split: 1/0
            health: {enabled: false}
            rollout:
              steps: \(settings.plan)
              hold: \(settings.hold)
              autoStart: \(settings.autoStart)
              rollback: {maxErrorRate: 20%, minRequests: 10}

            """ + extra
        try routes.write(to: directory.appendingPathComponent("shop.yaml"), atomically: true, encoding: .utf8)
    }

    /// Stops `teal serve` with `signal` and starts a new one with the same arguments and state
    /// file; returns once both its listeners are up (no request has been sent through it).
    func restart(with signal: Int32) async throws {
        server.send(signal)
        _ = await server.waitForExit(timeout: .seconds(40))
        server = try TealProcess(serveArguments)
        try await server.waitUntilServing(port: adminPort)
        try await server.waitUntilListening(port: proxyPort)
    }

    /// Sends one request through the proxy; the backend that answered (`blue`, `green`, `bad`)
    /// or the status when it was not 200.
    func request() async throws -> String {
        let (data, response) = try await URLSession(configuration: .ephemeral).data(from: URL(string: "http://127.0.0.1:\(proxyPort)/")!)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        return status == 200 ? String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "status \(status)"
    }

    /// The journal of `shop`.
    /// Waits (up to 10 s, then fails) until a request is with an instance: a busy upstream connection in
    /// `/metrics`. Fixed sleeps are too short when the machine is loaded.
    func waitUntilRequestInFlight() async throws {
        for _ in 0..<200 {
            if try await anyUpstreamConnectionBusy() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TealProcess.Failure("no request reached an instance within 10 s")
    }

    /// Whether `/metrics` counts any upstream connection busy (a request in flight, or opening).
    func anyUpstreamConnectionBusy() async throws -> Bool {
        let metrics = try await curl(["-s", "http://127.0.0.1:\(adminPort)/metrics"])
        return metrics.output.split(separator: "\n").contains {
            $0.hasPrefix("teal_upstream_connections{") && $0.contains("state=\"busy\"") && !$0.hasSuffix(" 0") && !$0.hasSuffix(" 0.0")
        }
    }

    func events() async throws -> [EventView] {
        try await AdminClient(address: "127.0.0.1:\(adminPort)", token: nil).send("GET", "/v1/events?route=shop")
    }

    /// The release of `shop` as the API shows it.
    func rollout() async throws -> RolloutView {
        try await AdminClient(address: "127.0.0.1:\(adminPort)", token: nil).send("GET", "/v1/routes/shop/rollout")
    }

    /// Runs a client command against this router's admin API.
    func teal(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await TealProcess.run(arguments, environment: ["TEAL_ADMIN": "127.0.0.1:\(adminPort)"])
    }

    /// Starts sending requests through the proxy, one after another from each of `clients`
    /// keep-alive clients, until stopped (at most 60 s).
    func load(clients: Int = 1) -> Load {
        Load(url: URL(string: "http://127.0.0.1:\(proxyPort)/")!, clients: clients)
    }

    /// Runs `body`, then stops everything whether it threw or not.
    static func with(extraArguments: [String] = [], tlsArguments: [String] = [], plan: String = "[1/1, 0/1]", hold: String = "1s",
                     green: String = "green", autoStart: Bool = false, blue: [String] = ["blue"], instances: [String: Int] = [:],
                     state: String? = nil, _ body: (ServedRouter) async throws -> Void) async throws {
        let router = try await ServedRouter(extraArguments: extraArguments, tlsArguments: tlsArguments, plan: plan, hold: hold,
                                            green: green, autoStart: autoStart, blue: blue, instances: instances, state: state)
        do {
            try await body(router)
        } catch {
            await router.stop()
            throw error
        }
        await router.stop()
    }

    func stop() async {
        server.send(SIGTERM)
        _ = await server.waitForExit(timeout: .seconds(10))
        for backend in backends.values { await backend.stop() }
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Steady requests through the proxy; counts answers by status (0: no answer) and by backend.
/// Stopped by a flag rather than task cancellation, so no request is abandoned half-way.
final class Load: Sendable {
    private final class Flag: Sendable {
        let raised = Atomic<Bool>(false)
    }

    private let stopped = Flag()
    private let task: Task<[String: Int], Never>

    init(url: URL, clients: Int) {
        let stopped = self.stopped
        task = Task {
            await withTaskGroup(of: [String: Int].self) { group in
                for _ in 0..<clients {
                    group.addTask {
                        let session = URLSession(configuration: .ephemeral)
                        defer { session.finishTasksAndInvalidate() }
                        var counts: [String: Int] = [:]
                        let deadline = ContinuousClock.now + .seconds(60)
                        while !stopped.raised.load(ordering: .relaxed) && ContinuousClock.now < deadline {
                            var request = URLRequest(url: url)
                            request.timeoutInterval = 10
                            let answer = try? await session.data(for: request)
                            let status = (answer?.1 as? HTTPURLResponse)?.statusCode ?? 0
                            counts["\(status)", default: 0] += 1
                            if status == 200, let body = answer?.0 {
                                counts[String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), default: 0] += 1
                            }
                            try? await Task.sleep(for: .milliseconds(2))
                        }
                        return counts
                    }
                }
                var total: [String: Int] = [:]
                for await counts in group { total.merge(counts, uniquingKeysWith: +) }
                return total
            }
        }
    }

    /// Stops the clients after their current request; the counts.
    func stop() async -> [String: Int] {
        stopped.raised.store(true, ordering: .relaxed)
        return await task.value
    }
}

@Suite("teal command against a live teal serve", .serialized)
struct CLITests {
    @Test("routes, split and rollout: tables, JSON, server errors as given, and rollout wait's exit codes (0 promoted, 1 rolled back, 2 timeout)")
    func releaseFromTheCommandLine() async throws {
        try await ServedRouter.with { router in
            let routes = try await router.teal(["routes", "--json"])
            #expect(routes.status == 0, "\(routes.output)")
            let views = try JSONDecoder().decode([RouteView].self, from: Data(routes.output.utf8))
            #expect(views.map(\.name) == ["shop"] && views[0].blue.version == "1.0")
            let table = try await router.teal(["routes"])
            #expect(table.status == 0 && table.output.contains("ROUTE") && table.output.contains("shop"), "\(table.output)")

            // A split the server refuses comes back as the server said it, exit 2.
            let unknown = try await router.teal(["split", "nope", "1/1"])
            #expect(unknown.status == 2 && unknown.output.contains("no route named nope") && unknown.output.contains("HTTP 404"), "\(unknown.output)")
            let split = try await router.teal(["split", "shop", "2/1"])
            #expect(split.status == 0, "\(split.output)")
            #expect(try await router.teal(["split", "shop", "1/0"]).status == 0)

            let load = router.load()
            // Healthy green: the plan runs (1 s per step) and `rollout wait` exits 0.
            let start = try await router.teal(["rollout", "start", "shop"])
            #expect(start.status == 0 && start.output.contains("shifting"), "\(start.output)")
            let stillRunning = try await router.teal(["rollout", "wait", "shop", "--timeout", "0.2"])
            #expect(stillRunning.status == 2, "\(stillRunning.output)")
            let promoted = try await router.teal(["rollout", "wait", "shop", "--timeout", "30"])
            #expect(promoted.status == 0 && promoted.output.contains("promoted"), "\(promoted.output)")

            // A green that answers only 500s: rolled back by the verdict, `rollout wait` exits 1.
            let bad = try await router.teal(["rollout", "start", "shop", "--green-version", "1.2",
                                             "--green-instance", "127.0.0.1:\(router.ports["bad"]!)"])
            #expect(bad.status == 0, "\(bad.output)")
            let rolledBack = try await router.teal(["rollout", "wait", "shop", "--timeout", "30"])
            #expect(rolledBack.status == 1 && rolledBack.output.contains("rolled-back"), "\(rolledBack.output)")
            let counts = await load.stop()
            #expect(counts["200", default: 0] > 0)

            let status = try await router.teal(["rollout", "status", "shop", "--json"])
            let view = try JSONDecoder().decode(RolloutView.self, from: Data(status.output.utf8))
            #expect(view.state == "rolled-back" && view.reason?.contains("error rate") == true, "\(status.output)")

            // The journal says who asked: the CLI started both releases, the verdict rolled one back.
            let events = try await router.events()
            let entries = events.map { "\($0.source): \($0.text)" }
            #expect(entries.filter { $0.hasPrefix("cli: release of") }.count == 2, "\(entries)")
            #expect(entries.contains { $0.hasPrefix("verdict: rolled back: green error rate") }, "\(entries)")
            #expect(entries.contains { $0.hasPrefix("plan: step 2/2") }, "\(entries)")
        }
    }
}
