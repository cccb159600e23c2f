import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer

extension LiveTests {
    @Suite("Live failures and hardening", .serialized)
    struct Failures {
        /// Sends `request` on a new connection; expects Teal's error answer `status` naming `name`,
        /// and (when `closes`) the connection closed after it.
        func expectError(_ fixture: LiveFixture, _ request: String, status: Int, name: String, closes: Bool = true,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
            let connection = try fixture.connect()
            try connection.send(request)
            let response = try connection.readResponse()
            #expect(response.status == status, sourceLocation: sourceLocation)
            #expect(response.header("X-Teal-Error") == name, sourceLocation: sourceLocation)
            #expect(response.text.contains(name), sourceLocation: sourceLocation)
            if closes { #expect(connection.closesConnection(), "connection should close", sourceLocation: sourceLocation) }
        }

        @Test("malformed framing and heads get 400 (or 431/414/505) and the connection is closed")
        func malformedRequests() async throws {
            let fixture = try await LiveFixture.start()
            let before = fixture.blue[0].acceptedConnections
            let cases: [(String, Int, String)] = [
                ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "content-length-with-transfer-encoding"),
                ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "duplicate-content-length"),
                ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc", 400, "invalid-content-length"),
                ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, "transfer-encoding-not-chunked"),
                ("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400, "obsolete-line-folding"),
                ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare-line-feed"),
                ("GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n", 400, "invalid-header"),
                ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing-host"),
                ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "repeated-host"),
                ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "invalid-header"),
                ("GET /\r\n\r\n", 400, "bad-request-line"),
                ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported-http-version"),
                ("GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "X-Filler: 0123456789\r\n", count: 120) + "\r\n", 431, "too-many-headers"),
                ("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 40_000) + "\r\n\r\n", 431, "headers-too-large"),
                ("GET /" + String(repeating: "p", count: 9_000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri-too-long"),
                ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, "invalid-chunked-body"),
            ]
            for (request, status, name) in cases {
                try expectError(fixture, request, status: status, name: name)
            }
            // None of the refused heads reached the instance (the bad chunk is found after its head went up).
            #expect(fixture.blue[0].acceptedConnections - before <= 1)
            await fixture.stop()
        }

        @Test("no route matched: 404 naming it, and the connection stays open")
        func noRoute() async throws {
            let fixture = try await LiveFixture.start(edit: { $0.match = RouteMatch(host: HostPattern(parsing: "shop.example.com")) })
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 404)
            #expect(response.header("X-Teal-Error") == "no-route")
            try connection.send("GET / HTTP/1.1\r\nHost: SHOP.example.com:8080\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            await fixture.stop()
        }

        @Test("a refused instance is skipped: the request goes to another instance of the same pool")
        func failoverOnConnectRefused() async throws {
            let dead = InstanceAddress(host: "127.0.0.1", port: try refusedPort())
            let fixture = try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.blue.instances.insert(dead, at: 0)
                route.health.ejectAfter = 1000  // keep the dead instance in rotation for this test
            })
            for _ in 0..<10 {
                let response = try fixture.get()
                #expect(response.status == 200)
                #expect(response.text == "blue-1\n")
            }
            let stats = fixture.router.controller.statistics(route: "live", pool: .blue)!
            #expect(stats.requests == 10)
            #expect(stats.errors == 0)
            await fixture.stop()
        }

        @Test("all instances refuse: 502 upstream-connect-failed, counted as connect errors")
        func allRefused() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.blue.instances = [InstanceAddress(host: "127.0.0.1", port: try! refusedPort()),
                                        InstanceAddress(host: "127.0.0.1", port: try! refusedPort())]
                route.health.ejectAfter = 1000
            })
            try expectError(fixture, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 502, name: "upstream-connect-failed", closes: false)
            let stats = fixture.router.controller.statistics(route: "live", pool: .blue)!
            #expect(stats.connectErrors == 1)
            await fixture.stop()
        }

        @Test("passive ejection: a refusing instance is taken out after consecutive failures")
        func passiveEjection() async throws {
            let dead = InstanceAddress(host: "127.0.0.1", port: try refusedPort())
            let fixture = try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.blue.instances.append(dead)
                route.health.ejectAfter = 2
                route.health.ejection = .seconds(60)
            })
            for _ in 0..<8 { #expect(try fixture.get().status == 200) }
            try await Task.sleep(for: .milliseconds(100))
            let health = fixture.router.controller.health(route: "live", instance: dead)!
            #expect(health.isEjected(at: .now))
            #expect(fixture.router.proxy.currentSnapshot.routes[0].blue.available.map(\.address) == [fixture.router.controller.routes[0].blue.instances[0]])
            await fixture.stop()
        }

        @Test("no healthy instance: 503 no-healthy-instance")
        func noHealthyInstance() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.blue.instances = [InstanceAddress(host: "127.0.0.1", port: try! refusedPort())]
                route.health.interval = .milliseconds(50)
                route.health.timeout = .milliseconds(50)
                route.health.fall = 1
            }, activeHealthChecks: true)
            try await Task.sleep(for: .milliseconds(400))
            try expectError(fixture, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 503, name: "no-healthy-instance", closes: false)
            await fixture.stop()
        }

        @Test("active probes follow route changes: a green pool registered later is probed")
        func probesFollowNewPools() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], edit: { route in
                route.health.interval = .milliseconds(50)
                route.health.timeout = .milliseconds(50)
                route.health.fall = 1
            }, activeHealthChecks: true)
            let dead = InstanceAddress(host: "127.0.0.1", port: try refusedPort())
            try await Task.sleep(for: .milliseconds(300))  // the checker has started and scanned the routes
            try await fixture.router.controller.setGreen(PoolSpec(version: "2", instances: [dead]), route: "live")
            var down = false
            for _ in 0..<40 where !down {
                try await Task.sleep(for: .milliseconds(100))
                down = fixture.router.controller.health(route: "live", instance: dead)?.probeUp == false
            }
            #expect(down, "the new green instance was never probed")
            #expect(fixture.router.controller.health(route: "live", instance: dead)?.lastProbeFailure != nil)
            await fixture.stop()
        }

        @Test("an instance slower than the response timeout: 504 upstream-timeout")
        func responseTimeout() async throws {
            let fixture = try await LiveFixture.start(backendOptions: { $0.latency = .seconds(3) },
                                                      edit: { $0.upstream.responseTimeout = .milliseconds(300) })
            let started = ContinuousClock.now
            try expectError(fixture, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 504, name: "upstream-timeout", closes: false)
            #expect(ContinuousClock.now - started < .seconds(2))
            #expect(fixture.router.controller.statistics(route: "live", pool: .blue)!.timeouts == 1)
            await fixture.stop()
        }

        @Test("after a 504 the keep-alive connection still closes when idle")
        func idleDeadlineAfterTimeout() async throws {
            let fixture = try await LiveFixture.start(backendOptions: { $0.latency = .seconds(3) },
                                                      edit: { $0.upstream.responseTimeout = .milliseconds(300) },
                                                      configure: { $0.clientIdleTimeout = .milliseconds(500) })
            let connection = try fixture.connect(timeout: 3)
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try connection.readResponse().status == 504)
            #expect(connection.closesConnection())
            await fixture.stop()
        }

        @Test("an invalid upstream response: 502 upstream-invalid-response")
        func invalidResponse() async throws {
            let canned = try await CannedUpstream(reply: "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
            let fixture = try await LiveFixture.start(edit: { $0.blue.instances = [canned.address] })
            try expectError(fixture, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 502, name: "upstream-invalid-response", closes: false)
            #expect(fixture.router.controller.statistics(route: "live", pool: .blue)!.invalidResponses == 1)
            await fixture.stop()
            await canned.stop()
        }

        @Test("an upstream that closes without answering: 502 upstream-closed")
        func upstreamClosed() async throws {
            let canned = try await CannedUpstream(reply: "")
            let fixture = try await LiveFixture.start(edit: { $0.blue.instances = [canned.address] })
            try expectError(fixture, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", status: 502, name: "upstream-closed", closes: false)
            await fixture.stop()
            await canned.stop()
        }

        @Test("a head that does not arrive in time: 408")
        func headerTimeout() async throws {
            let fixture = try await LiveFixture.start(configure: { $0.headerReadTimeout = .milliseconds(300) })
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 408)
            #expect(response.header("X-Teal-Error") == "header-read-timeout")
            #expect(connection.closesConnection())
            await fixture.stop()
        }

        @Test("an idle keep-alive connection is closed after the idle timeout")
        func idleTimeout() async throws {
            let fixture = try await LiveFixture.start(configure: { $0.clientIdleTimeout = .milliseconds(300) })
            let connection = try fixture.connect(timeout: 3)
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            #expect(connection.closesConnection())
            await fixture.stop()
        }

        @Test("connections beyond the limit are closed at accept")
        func connectionLimit() async throws {
            let fixture = try await LiveFixture.start(configure: { $0.maxConnections = 2 })
            let first = try fixture.connect(), second = try fixture.connect()
            try first.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try first.readResponse().status == 200)
            let third = try fixture.connect(timeout: 3)
            #expect(third.closesConnection())
            try second.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try second.readResponse().status == 200)
            await fixture.stop()
        }
    }
}
