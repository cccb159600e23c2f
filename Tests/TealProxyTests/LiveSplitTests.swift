import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer

extension LiveTests {
    @Suite("Live split", .serialized)
    struct Splitting {
        /// Counts answers by pool over `count` sequential requests on one connection.
        func countPools(_ fixture: LiveFixture, requests count: Int) throws -> (blue: Int, green: Int) {
            let connection = try fixture.connect()
            var blue = 0, green = 0
            for _ in 0..<count {
                try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                let name = try connection.readResponse().header("X-Backend") ?? ""
                if name.hasPrefix("blue") { blue += 1 } else if name.hasPrefix("green") { green += 1 }
            }
            return (blue, green)
        }

        @Test("2/4 sends exactly 200 of 600 sequential requests to blue and 400 to green, spread evenly")
        func exactSplit() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1", "blue-2"], green: ["green-1", "green-2", "green-3"],
                                                      split: Split(blue: 2, green: 4)!)
            let connection = try fixture.connect()
            var byName: [String: Int] = [:]
            var window: [String] = []
            for _ in 0..<600 {
                try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                let name = try connection.readResponse().header("X-Backend") ?? "?"
                byName[name, default: 0] += 1
                window.append(name)
            }
            let blue = byName.filter { $0.key.hasPrefix("blue") }.values.reduce(0, +)
            #expect(blue == 200)
            #expect(byName.filter { $0.key.hasPrefix("green") }.values.reduce(0, +) == 400)
            #expect(byName["blue-1"] == 100 && byName["blue-2"] == 100)
            #expect(byName["green-1"] == 134 || byName["green-1"] == 133)
            // Every 6 consecutive requests hold exactly 2 blue.
            for start in stride(from: 0, to: 594, by: 1) {
                #expect(window[start..<(start + 6)].filter { $0.hasPrefix("blue") }.count == 2)
            }
            await fixture.stop()
        }

        @Test("6/0 and 0/6 send nothing to the zero side", arguments: [(6, 0), (0, 6)])
        func oneSided(blue: Int, green: Int) async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], split: Split(blue: blue, green: green)!)
            let counts = try countPools(fixture, requests: 60)
            #expect(counts.blue == (blue > 0 ? 60 : 0))
            #expect(counts.green == (green > 0 ? 60 : 0))
            await fixture.stop()
        }

        @Test("a split change applies to the very next request")
        func splitChange() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"])
            #expect(try countPools(fixture, requests: 12) == (12, 0))
            try await fixture.router.controller.setSplit(Split(blue: 0, green: 1)!, route: "live")
            #expect(try countPools(fixture, requests: 12) == (0, 12))
            try await fixture.router.controller.setSplit(Split(blue: 1, green: 1)!, route: "live")
            #expect(try countPools(fixture, requests: 12) == (6, 6))
            await #expect(throws: RoutingError.unknownRoute("nope")) {
                try await fixture.router.controller.setSplit(.allBlue, route: "nope")
            }
            await fixture.stop()
        }

        @Test("a promotion saved by another replica: this one serves green as blue, and the old blue's idle connections close")
        func adoptedPromotionDrains() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"])
            #expect(try countPools(fixture, requests: 4) == (4, 0))
            let controller = fixture.router.controller
            let oldBlue = controller.upstreams(route: "live", pool: .blue)
            #expect(await fixture.router.proxy.upstreamConnections(to: oldBlue).values.map(\.idle).reduce(0, +) > 0)
            let file = controller.routes[0]
            let promoted = RouteRecord(route: "live", split: .allBlue, blue: try #require(file.green), green: nil,
                                       fileBlue: file.blue, fileGreen: file.green, updatedAt: Date())
            #expect(await controller.adopt(StoredRoute(record: promoted, revision: 7)))
            #expect(try countPools(fixture, requests: 4) == (0, 4))  // all by green-1, the blue pool now
            #expect(controller.routes[0].blue == file.green)
            // Well before any idle timeout would close them (about 4 s here).
            let deadline = ContinuousClock.now + .seconds(1)
            var idle = 1
            while idle > 0 && ContinuousClock.now < deadline {
                idle = await fixture.router.proxy.upstreamConnections(to: oldBlue).values.map(\.idle).reduce(0, +)
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(idle == 0)
            await fixture.stop()
        }

        @Test("statistics count every response per pool, with 5xx and latency")
        func statistics() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], split: Split(blue: 1, green: 1)!,
                                                      backendOptions: { if $0.name.hasPrefix("green") { $0.errorRate = 1 } })
            _ = try countPools(fixture, requests: 100)
            let blue = fixture.router.controller.statistics(route: "live", pool: .blue)!
            let green = fixture.router.controller.statistics(route: "live", pool: .green)!
            #expect(blue.requests == 50 && blue.serverErrors == 0)
            #expect(green.requests == 50 && green.serverErrors == 50)
            #expect(green.errorRate == 1)
            #expect(blue.latency(quantile: 0.99)! < .seconds(1))
            await fixture.stop()
        }

        @Test("under concurrent load the split holds within 1%")
        func concurrentSplit() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], split: Split(blue: 2, green: 4)!)
            let clients = 8, perClient = 150
            try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for _ in 0..<clients {
                    group.addTask { try countPools(fixture, requests: perClient) }
                }
                var blue = 0, green = 0
                for try await counts in group { blue += counts.0; green += counts.1 }
                #expect(blue + green == clients * perClient)
                #expect(abs(Double(blue) / Double(clients * perClient) - 1.0 / 3.0) <= 0.01)
            }
            await fixture.stop()
        }
    }
}
