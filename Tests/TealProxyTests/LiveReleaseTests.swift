import Foundation
import Synchronization
import Testing
import TealCore
@testable import TealProxy
import TealServer

/// A steady load of sequential requests on a few keep-alive connections, recording when each
/// answer came, from which backend and with which status.
final class SteadyLoad: Sendable {
    struct Sample: Sendable { let time: ContinuousClock.Instant; let backend: String; let status: Int }
    private let samples = Mutex<[Sample]>([])
    private let running = Atomic<Bool>(true)

    init(port: Int, connections: Int = 2, headers: String = "") {
        for _ in 0..<connections {
            let thread = Thread {
                var connection = try? RawConnection(port: port)
                var sent = 0
                while self.running.load(ordering: .relaxed) && sent < 200_000 {
                    sent += 1
                    do {
                        if connection == nil { connection = try RawConnection(port: port) }
                        try connection!.send("GET / HTTP/1.1\r\nHost: load\r\n\(headers)\r\n")
                        let response = try connection!.readResponse()
                        self.samples.withLock { $0.append(Sample(time: .now, backend: response.header("X-Backend") ?? "teal", status: response.status)) }
                        if response.header("Connection") == "close" { connection = nil }
                    } catch {
                        self.samples.withLock { $0.append(Sample(time: .now, backend: "error", status: 0)) }
                        connection = nil
                    }
                }
            }
            thread.start()
        }
    }

    /// Stops the load and returns every sample, in time order.
    func stop() async -> [Sample] {
        running.store(false, ordering: .relaxed)
        try? await Task.sleep(for: .milliseconds(300))
        return samples.withLock { $0 }.sorted { $0.time < $1.time }
    }
}

extension LiveTests {
    @Suite("Live releases")
    struct Releases {
        static func policy(steps: [String], hold: Duration, smoke: [SmokeRequest] = [], minRequests: Int = 50) -> RolloutPolicy {
            var policy = RolloutPolicy(steps: steps.map { PlanStep(split: Split(parsing: $0)!) })
            policy.hold = hold
            policy.smoke = smoke
            policy.rollback.minRequests = minRequests
            policy.rollback.maxErrorRate = 0.05
            return policy
        }

        static func greenSpec(_ fixture: LiveFixture) -> PoolSpec {
            PoolSpec(version: "2", instances: fixture.green.map { InstanceAddress(host: "127.0.0.1", port: $0.port!) })
        }

        @Test("green at 30% errors is rolled back, all blue within 1 s of the verdict's condition holding")
        func rollbackWithinASecond() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1", "blue-2"], green: ["green-1", "green-2"],
                                                      backendOptions: { if $0.name.hasPrefix("green") { $0.errorRate = 0.3 } })
            let load = SteadyLoad(port: fixture.port, connections: 3)
            try await Task.sleep(for: .milliseconds(300))
            let policy = Self.policy(steps: ["2/4", "0/6"], hold: .seconds(30))
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: Self.greenSpec(fixture), policy: policy))
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(15))
            try await Task.sleep(for: .milliseconds(500))
            let samples = await load.stop()
            guard case .rolledBack(.errorRate, _)? = outcome else {
                Issue.record("expected a rollback for the error rate, got \(String(describing: outcome))"); await fixture.stop(); return
            }
            let green = samples.filter { $0.backend.hasPrefix("green") }
            // The condition holds once 50 green answers are in the window (30% errors > 5%).
            let conditionTrue = green[policy.rollback.minRequests - 1].time
            let lastGreen = green.last!.time
            let detectToAllBlue = lastGreen - conditionTrue
            #expect(detectToAllBlue <= .seconds(1), "green answers went on for \(detectToAllBlue) after the condition held")
            print("rollback: \(green.count) green answers; last green answer \(detectToAllBlue) after the condition held")
            #expect(samples.last!.backend.hasPrefix("blue"))
            // All blue in the plan's terms: 2/4 → 0/6 goes back to 6/0.
            #expect(fixture.router.controller.routes[0].split.description == "6/0")
            #expect(await fixture.router.releases.events(route: "live").contains { $0.text.contains("rolled back: green error rate") })
            await fixture.stop()
        }

        @Test("a healthy green is promoted through every step with zero failed requests")
        func healthyPromotion() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1", "blue-2"], green: ["green-1", "green-2"])
            let load = SteadyLoad(port: fixture.port, connections: 3)
            let policy = Self.policy(steps: ["6/0", "6/1", "2/4", "0/6"], hold: .milliseconds(400),
                                     smoke: [SmokeRequest(path: "/healthz")])
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: Self.greenSpec(fixture), policy: policy),
                                                    drainTimeout: .seconds(5))
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(20))
            try await Task.sleep(for: .milliseconds(200))
            let samples = await load.stop()
            guard case .promoted? = outcome else {
                Issue.record("expected promotion, got \(String(describing: outcome))"); await fixture.stop(); return
            }
            #expect(samples.count > 100)
            #expect(samples.allSatisfy { $0.status == 200 }, "failed: \(samples.filter { $0.status != 200 }.count)")
            #expect(samples.contains { $0.backend.hasPrefix("green") })
            let route = fixture.router.controller.routes[0]
            #expect(route.blue.version == "2")
            #expect(route.green == nil)
            #expect(route.split.description == "6/0", "promoted: all blue in the plan's terms")
            #expect(samples.suffix(20).allSatisfy { $0.backend.hasPrefix("green") })
            await fixture.stop()
        }

        @Test("a failed smoke test rolls back before green gets a single user request")
        func smokeFailure() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"])
            let load = SteadyLoad(port: fixture.port, connections: 2)
            let policy = Self.policy(steps: ["2/4", "0/6"], hold: .seconds(5), smoke: [{
                var smoke = SmokeRequest(path: "/healthz")
                smoke.bodyContains = "ready"
                return smoke
            }()])
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: Self.greenSpec(fixture), policy: policy))
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(10))
            let samples = await load.stop()
            guard case .rolledBack(.smokeFailed(let instance, _, let detail), _)? = outcome else {
                Issue.record("expected a smoke failure, got \(String(describing: outcome))"); await fixture.stop(); return
            }
            #expect(instance.port == fixture.green[0].port)
            #expect(detail.contains("ready"))
            #expect(!samples.contains { $0.backend.hasPrefix("green") })
            #expect(fixture.router.controller.statistics(route: "live", pool: .green)!.requests == 0)
            await fixture.stop()
        }

        @Test("the preview header reaches green only when preview access is on")
        func previewAccess() async throws {
            for enabled in [true, false] {
                let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], edit: { route in
                    if enabled {
                        var preview = PreviewAccess()
                        preview.value = "s3cret"
                        preview.cookie = "teal_pool"
                        route.preview = preview
                    }
                })
                #expect(try fixture.get("/", headers: "X-Teal-Pool: s3cret\r\n").text == (enabled ? "green-1\n" : "blue-1\n"))
                #expect(try fixture.get("/", headers: "Cookie: a=b; teal_pool=s3cret\r\n").text == (enabled ? "green-1\n" : "blue-1\n"))
                #expect(try fixture.get("/", headers: "X-Teal-Pool: green\r\n").text == "blue-1\n")  // wrong secret
                #expect(try fixture.get("/").text == "blue-1\n")
                await fixture.stop()
            }
        }

        @Test("promotion drains the old blue pool: it waits for a slow in-flight request")
        func drainWaitsForInFlight() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"],
                                                      backendOptions: { if $0.name.hasPrefix("blue") { $0.latency = .milliseconds(800) } })
            let slow = try fixture.connect()
            try slow.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            try await Task.sleep(for: .milliseconds(100))
            let policy = Self.policy(steps: ["0/6"], hold: .milliseconds(50))
            let started = ContinuousClock.now
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: Self.greenSpec(fixture), policy: policy),
                                                    drainTimeout: .seconds(5))
            // New requests go to green at once; the hold (onNoTraffic: wait) starts with them.
            #expect(try fixture.get().text == "green-1\n")
            try await Task.sleep(for: .milliseconds(400))
            #expect(fixture.router.releases.state(route: "live")?.name == "draining")
            #expect(try fixture.get().text == "green-1\n")  // green is the blue pool now
            let response = try slow.readResponse()
            #expect(response.status == 200 && response.text == "blue-1\n")
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(5))
            guard case .promoted(let at)? = outcome else { Issue.record("expected promotion"); await fixture.stop(); return }
            #expect(at - started >= .milliseconds(600))
            #expect(await fixture.router.releases.events(route: "live").contains { $0.text.contains("old blue pool drained") })
            await fixture.stop()
        }

        @Test("autoStart releases green at start-up; hooks run with the release's environment")
        func autoStartAndHooks() async throws {
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("teal-hooks-\(UUID().uuidString).log").path
            defer { try? FileManager.default.removeItem(atPath: log) }
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], edit: { route in
                var policy = Self.policy(steps: ["6/1", "0/6"], hold: .milliseconds(100))
                policy.autoStart = true
                policy.hooks.step = "echo \"$TEAL_EVENT $TEAL_ROUTE $TEAL_STEP $TEAL_SPLIT $TEAL_GREEN_VERSION\" >> \(log)"
                policy.hooks.promoted = "echo \"$TEAL_EVENT $TEAL_ROUTE\" >> \(log)"
                route.rollout = policy
            })
            let load = SteadyLoad(port: fixture.port, connections: 1)
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(10))
            _ = await load.stop()
            guard case .promoted? = outcome else { Issue.record("expected promotion, got \(String(describing: outcome))"); await fixture.stop(); return }
            try await Task.sleep(for: .milliseconds(200))  // the promoted hook runs after the state changes
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(lines == ["step live 1 6/1 2", "step live 2 0/6 2", "promoted live"])
            await fixture.stop()
        }

        @Test("a failing step hook rolls back before its split is set")
        func failingHook() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"])
            var policy = Self.policy(steps: ["2/4", "0/6"], hold: .seconds(5))
            policy.hooks.step = "exit 3"
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: Self.greenSpec(fixture), policy: policy))
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(5))
            #expect(outcome.map { "\($0)" }?.contains("exit status 3") == true)
            #expect(fixture.router.controller.statistics(route: "live", pool: .green)!.requests == 0)
            await fixture.stop()
        }
    }
}
