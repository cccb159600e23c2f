import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer

extension LiveTests {
    /// Green's failures answered by blue (`rollout.retryOnBlue`), with every request on green
    /// (split 0/1) so each one meets the failing green first.
    @Suite("Live retry on blue", .serialized)
    struct RetryOnBlue {
        /// A router whose green pool is `green` (blue is a healthy demo backend), all traffic on green.
        static func fixture(green: InstanceAddress, edit: @escaping (inout Route) -> Void = { _ in }) async throws -> LiveFixture {
            try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.green = PoolSpec(version: "2", instances: [green])
                route.split = Split(blue: 0, green: 1)!
                route.upstream.responseTimeout = .milliseconds(300)
                route.upstream.connectTimeout = .milliseconds(300)
                edit(&route)
            })
        }

        static func retries(_ fixture: LiveFixture) -> [BlueRetryReason: UInt64] {
            fixture.router.controller.retries(route: "live").filter { $0.value > 0 }
        }

        static func statistics(_ fixture: LiveFixture, _ color: PoolColor) -> PoolStatistics {
            fixture.router.controller.statistics(route: "live", pool: color) ?? PoolStatistics()
        }

        enum Failure: String, CaseIterable, CustomStringConvertible {
            case status502, status503, status504, reset, timeout, refused
            var description: String { rawValue }
            var reason: BlueRetryReason {
                switch self {
                case .status502: .status502
                case .status503: .status503
                case .status504: .status504
                case .reset: .reset
                case .timeout: .timeout
                case .refused: .connect
                }
            }
        }

        /// A green instance that fails this way, and how to stop it.
        static func failingGreen(_ failure: Failure) async throws -> (InstanceAddress, () async -> Void) {
            let reply: String
            var close = true
            switch failure {
            case .status502, .status503, .status504:
                let status = failure == .status502 ? 502 : failure == .status503 ? 503 : 504
                reply = "HTTP/1.1 \(status) Bad\r\nContent-Length: 5\r\nX-Backend: green-1\r\n\r\ngreen"
            case .reset: reply = ""
            case .timeout:
                reply = ""
                close = false
            case .refused:
                return (InstanceAddress(host: "127.0.0.1", port: try refusedPort()), {})
            }
            let upstream = try await CannedUpstream(reply: reply, close: close)
            return (upstream.address, { await upstream.stop() })
        }

        @Test("a GET that green fails is answered by blue; green's failure counts in green's statistics", arguments: Failure.allCases)
        func answeredByBlue(_ failure: Failure) async throws {
            let (green, stopGreen) = try await Self.failingGreen(failure)
            let fixture = try await Self.fixture(green: green)
            for method in ["GET", "HEAD", "OPTIONS"] {
                let connection = try fixture.connect()
                try connection.send("\(method) / HTTP/1.1\r\nHost: a\r\n\r\n")
                let response = try connection.readResponse(requestWasHead: method == "HEAD")
                #expect(response.status == 200 && response.header("X-Backend") == "blue-1", "\(method): \(response.status)")
            }
            #expect(Self.retries(fixture) == [failure.reason: 3])
            let metrics = String(decoding: await RouterAdminBackend(router: fixture.router).metrics(), as: UTF8.self)
            #expect(metrics.contains("teal_retries_total{route=\"live\",from=\"green\",to=\"blue\",reason=\"\(failure.reason.label)\"} 3"),
                    "\(metrics.split(separator: "\n").filter { $0.contains("retries") })")
            let greenStats = Self.statistics(fixture, .green)
            #expect(greenStats.requests == 3 && greenStats.errors == 3, "\(greenStats)")
            #expect(Self.statistics(fixture, .blue).requests == 3)
            await fixture.stop()
            await stopGreen()
        }

        @Test("repeated with the body green got when it is kept (up to maxBody); not repeated: a POST without an Idempotency-Key, a body past maxBody")
        func onlyRetrySafe() async throws {
            let (green, stopGreen) = try await Self.failingGreen(.status502)
            // 24 bytes as forwarded: the chunked body below is 21 with its framing.
            let fixture = try await Self.fixture(green: green) { $0.retryOnBlue.maxBody = 24 }
            let cases: [(String, String, String?)] = [
                ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "green-1", nil),
                ("POST / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: 8e03978e\r\n\r\n", "blue-1", "0"),
                ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "blue-1", "5"),
                ("PUT / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: 8e03978f\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3\r\nyou\r\n0\r\n\r\n",
                 "blue-1", "5"),
                ("PUT / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: 8e039790\r\nContent-Length: 25\r\n\r\n" + String(repeating: "x", count: 25), "green-1", nil),
                ("PUT / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: 8e039791\r\nTransfer-Encoding: chunked\r\n\r\na\r\n1234567890\r\na\r\n1234567890\r\n0\r\n\r\n",
                 "green-1", nil),
            ]
            for (request, backend, bodyBytes) in cases {
                let connection = try fixture.connect()
                try connection.send(request)
                let response = try connection.readResponse()
                #expect(response.header("X-Backend") == backend, "\(request.prefix(40)): \(response.status)")
                if let bodyBytes { #expect(response.header("X-Body-Bytes") == bodyBytes, "\(request.prefix(40))") }
            }
            #expect(Self.retries(fixture) == [.status502: 3])
            await fixture.stop()
            await stopGreen()
        }

        @Test("after green's answer has started, nothing is repeated: the client sees the cut-off answer")
        func notAfterTheAnswerStarted() async throws {
            let upstream = try await CannedUpstream(reply: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Backend: green-1\r\n\r\npartial")
            let fixture = try await Self.fixture(green: upstream.address)
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(throws: (any Error).self) { _ = try connection.readResponse() }
            #expect(Self.retries(fixture).isEmpty)
            #expect(Self.statistics(fixture, .blue).requests == 0)
            await fixture.stop()
            await upstream.stop()
        }

        @Test("a preview request asked for green: green's failure is its answer")
        func notForPreviews() async throws {
            let (green, stopGreen) = try await Self.failingGreen(.status502)
            let fixture = try await Self.fixture(green: green) { route in
                route.preview = PreviewAccess()
                route.split = .allBlue
            }
            #expect(try fixture.get(headers: "X-Teal-Pool: green\r\n").status == 502)
            #expect(try fixture.get().header("X-Backend") == "blue-1")
            #expect(Self.retries(fixture).isEmpty)
            await fixture.stop()
            await stopGreen()
        }

        @Test("switched off by the route, or a 500 unless on500: green's answer goes to the client")
        func switchedOff() async throws {
            let (green, stopGreen) = try await Self.failingGreen(.status502)
            let off = try await Self.fixture(green: green) { $0.retryOnBlue.enabled = false }
            #expect(try off.get().status == 502)
            #expect(Self.retries(off).isEmpty)
            await off.stop()
            await stopGreen()

            let upstream = try await CannedUpstream(reply: "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            let plain = try await Self.fixture(green: upstream.address)
            #expect(try plain.get().status == 500)
            await plain.stop()
            let on500 = try await Self.fixture(green: upstream.address) { $0.retryOnBlue.on500 = true }
            #expect(try on500.get().header("X-Backend") == "blue-1")
            #expect(Self.retries(on500) == [.status500: 1])
            await on500.stop()
            await upstream.stop()
        }

        @Test("a release's journal says how many of green's failures blue answered during it, by reason")
        func journalCount() async throws {
            let (green, stopGreen) = try await Self.failingGreen(.status502)
            let fixture = try await Self.fixture(green: green) { $0.split = .allBlue }
            var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 0, green: 1)!)])
            policy.hold = .seconds(3600)
            policy.rollback.minRequests = 1_000
            policy.onNoTraffic = .ignore
            let releases = fixture.router.releases
            try await releases.start(ReleaseSpec(route: "live", green: PoolSpec(version: "2", instances: [green]), policy: policy))
            let deadline = ContinuousClock.now + .seconds(5)
            while fixture.router.controller.routes[0].split.green == 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            for _ in 0..<5 { #expect(try fixture.get().header("X-Backend") == "blue-1") }
            try await releases.send(.abort(reason: "test", by: "test"), route: "live")
            var events: [String] = []
            while !events.contains(where: { $0.contains("answered by blue") }) && ContinuousClock.now < deadline + .seconds(5) {
                try await Task.sleep(for: .milliseconds(20))
                events = await releases.events(route: "live").map(\.text)
            }
            #expect(events.contains("5 requests green failed during the release were answered by blue (status_502 5)"), "\(events)")
            await fixture.stop()
            await stopGreen()
        }

        @Test("the budget holds under a 100%-failing green: at most 10 + 20% of the requests go to blue again")
        func budget() async throws {
            let (green, stopGreen) = try await Self.failingGreen(.status503)
            let fixture = try await Self.fixture(green: green)
            let connection = try fixture.connect()
            var statuses: [Int: Int] = [:]
            for _ in 0..<200 {
                try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                statuses[try connection.readResponse().status, default: 0] += 1
            }
            let retried = Int(Self.retries(fixture)[.status503] ?? 0)
            #expect(statuses[200] == retried && statuses[503] == 200 - retried, "\(statuses)")
            // One event loop serves the connection: its bucket starts with 10 and gains 0.2 a request.
            #expect(retried >= 40 && retried <= 51, "\(retried) retries")
            #expect(Self.statistics(fixture, .green).errors == 200)
            await fixture.stop()
            await stopGreen()
        }
    }
}
