import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TealAdmin
import TealTestSupport

/// `teal serve --state postgres://…` against a throwaway PostgreSQL cluster (`PostgresCluster`).
@Suite("teal serve with its state in PostgreSQL", .serialized)
struct PostgresServeTests {
    /// A file holding `password` (with a line break, as editors save it), in `directory`.
    static func passwordFile(_ password: String, in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("state-password")
        try Data((password + "\n").utf8).write(to: file)
        return file.path
    }

    @Test("a split set through the API survives kill -9: teal serve restarted on the same database serves it from the first request")
    func splitSurvivesKill() async throws {
        try await PostgresCluster.with(password: "pg-Secret 1") { cluster in
            try await cluster.createDatabase("teal")
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("teal-pg-cli-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let password = try Self.passwordFile("pg-Secret 1", in: folder)
            try await ServedRouter.with(extraArguments: ["--state-password-file", password], state: cluster.url(database: "teal")) { router in
                #expect(try await router.request() == "blue")
                let split = try await router.teal(["split", "shop", "1/3"])
                #expect(split.status == 0, "\(split.output)")
                // Saved before the API answered.
                let stored = try await cluster.psql("SELECT record::jsonb -> 'split' FROM teal_routes WHERE name = 'shop'", database: "teal")
                #expect(stored.contains("\"blue\": 1") && stored.contains("\"green\": 3"), "\(stored)")

                try await router.restart(with: SIGKILL)

                // The very first requests follow the stored split: 1 blue and 3 green in every 4.
                var first: [String] = []
                for _ in 0..<8 { first.append(try await router.request()) }
                #expect(first.filter { $0 == "blue" }.count == 2 && first.filter { $0 == "green" }.count == 6, "\(first)")
                #expect(router.server.log.contains("state in PostgreSQL") && router.server.log.contains("route state restored"),
                        "\(router.server.log)")
            }
        }
    }

    /// Another `teal serve` on the routes and state of `router` (its own ports).
    static func replica(of router: ServedRouter, state: String) async throws -> (process: TealProcess, admin: Int, proxy: Int) {
        let proxy = try freePort(), admin = try freePort()
        let process = try TealProcess(["serve", "--routes", router.directory.path, "--listen", "127.0.0.1:\(proxy)",
                                       "--admin", "127.0.0.1:\(admin)", "--state", state, "--threads", "1"])
        try await process.waitUntilServing(port: admin)
        try await process.waitUntilListening(port: proxy)
        return (process, admin, proxy)
    }

    /// A throwaway cluster with database `teal`, and a `ServedRouter` (the first replica) on it;
    /// `body` gets the router, the `--state` URL (for more replicas) and the cluster.
    static func withSharedState(plan: String = "[1/1, 0/1]", hold: String = "1s", green: String = "green",
                                _ body: (ServedRouter, String, PostgresCluster) async throws -> Void) async throws {
        try await PostgresCluster.with(password: "pw") { cluster in
            try await cluster.createDatabase("teal")
            let state = cluster.url(database: "teal", withPassword: true)
            try await ServedRouter.with(plan: plan, hold: hold, green: green, state: state) { router in
                try await body(router, state, cluster)
            }
        }
    }

    @Test("three replicas on one database: splits set through replica 1 are served by replicas 2 and 3 within 100 ms (median of 20)")
    func splitPropagates() async throws {
        try await Self.withSharedState { first, state, cluster in
            let replicas = [try await Self.replica(of: first, state: state), try await Self.replica(of: first, state: state)]
            defer { for replica in replicas { replica.process.send(SIGKILL) } }
            let writer = try AdminClient(address: "127.0.0.1:\(first.adminPort)", token: nil)
            let readers = try replicas.map { try AdminClient(address: "127.0.0.1:\($0.admin)", token: nil) }
            var delays: [Duration] = []
            for change in 1...20 {
                let split = SplitBody(blue: change % 4, green: 1 + change % 3)
                let _: RouteView = try await writer.send("PUT", "/v1/routes/shop/split", body: split)
                let start = ContinuousClock.now
                for reader in readers {
                    while true {
                        let view: RouteView = try await reader.send("GET", "/v1/routes/shop")
                        if view.split == split { break }
                        try #require(ContinuousClock.now - start < .seconds(10), "replica still serves \(view.split), not \(split)")
                        try await Task.sleep(for: .milliseconds(2))
                    }
                }
                delays.append(ContinuousClock.now - start)
            }
            let sorted = delays.sorted()
            print("split propagation to two replicas, 20 changes: median \(sorted[sorted.count / 2]), max \(sorted.last!)")
            #expect(sorted[sorted.count / 2] < .milliseconds(100), "propagation delays \(sorted)")
            #expect(sorted.last! < .seconds(1), "propagation delays \(sorted)")
            // Every replica lists the three, each serving the newest revision (as reported
            // within a second).
            var listed: [ReplicaView] = try await readers[1].send("GET", "/v1/replicas")
            let reported = ContinuousClock.now
            while !listed.allSatisfy({ $0.lag == 0 }) && ContinuousClock.now - reported < .seconds(5) {
                try await Task.sleep(for: .milliseconds(100))
                listed = try await readers[1].send("GET", "/v1/replicas")
            }
            #expect(listed.count == 3 && listed.filter(\.current).count == 1, "\(listed)")
            #expect(Set(listed.map(\.admin)) == Set([first.adminPort, replicas[0].admin, replicas[1].admin].map { "127.0.0.1:\($0)" }))
            #expect(listed.allSatisfy { $0.lag == 0 && $0.revision > 0 && $0.seenSecondsAgo < 5 }, "\(listed)")
            let table = try await TealProcess.run(["replicas"], environment: ["TEAL_ADMIN": "127.0.0.1:\(replicas[0].admin)"])
            #expect(table.status == 0 && table.output.contains("REVISION") && table.output.contains("127.0.0.1:\(first.adminPort)"),
                    "\(table.output)")
            let ready = try await TealProcess.runCommand(["/usr/bin/curl", "-s", "http://127.0.0.1:\(replicas[1].admin)/readyz"])
            #expect(ready.output == "ready\n", "\(ready.output)")
            let metrics = try await TealProcess.runCommand(["/usr/bin/curl", "-s", "http://127.0.0.1:\(replicas[1].admin)/metrics"])
            func gauge(_ name: String) -> Double? {
                metrics.output.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
            }
            #expect(gauge("teal_state_store_up") == 1 && gauge("teal_state_revision") == Double(listed[0].revision), "\(metrics.output)")
            // The data plane of a follower routes by it: 0/1 sends everything to green.
            let _: RouteView = try await writer.send("PUT", "/v1/routes/shop/split", body: SplitBody(blue: 0, green: 1))
            try await Task.sleep(for: .milliseconds(300))
            for replica in replicas {
                let (data, _) = try await URLSession(configuration: .ephemeral).data(from: URL(string: "http://127.0.0.1:\(replica.proxy)/")!)
                #expect(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "green")
            }
        }
    }

    @Test("a release run by one replica that is killed with -9 mid-step is taken over by another, from the same step, and promotes; starting it again elsewhere meanwhile is refused")
    func driverTakeover() async throws {
        try await Self.withSharedState(plan: "[3/1, 1/3, 0/1]", hold: "3s") { driver, state, cluster in
            let others = [try await Self.replica(of: driver, state: state), try await Self.replica(of: driver, state: state)]
            defer { for replica in others { replica.process.send(SIGKILL) } }
            // Traffic through every replica: the verdict judges the driver's own traffic.
            let loads = others.map { Load(url: URL(string: "http://127.0.0.1:\($0.proxy)/")!, clients: 1) } + [driver.load()]
            let start = try await driver.teal(["rollout", "start", "shop"])
            #expect(start.status == 0, "\(start.output)")
            // Another replica refuses to start it again: the release is run where it started.
            let again = try await TealProcess.run(["rollout", "start", "shop"], environment: ["TEAL_ADMIN": "127.0.0.1:\(others[0].admin)"])
            #expect(again.status == 2 && again.output.contains("another replica runs the release of shop"), "\(again.output)")
            // Any replica answers for the release: the others ask the one that runs it.
            try await Task.sleep(for: .milliseconds(1500))  // its report says it drives the release
            let elsewhere: RolloutView = try await AdminClient(address: "127.0.0.1:\(others[1].admin)", token: nil)
                .send("GET", "/v1/routes/shop/rollout")
            #expect(elsewhere.state == "shifting" && elsewhere.steps == ["3/1", "1/3", "0/1"], "\(elsewhere)")
            // Wait until step 2's split is served (a step is saved before its split applies,
            // so step 2 is durable then), then kill the driver mid-step.
            let watcher = try AdminClient(address: "127.0.0.1:\(driver.adminPort)", token: nil)
            var view: RolloutView = try await watcher.send("GET", "/v1/routes/shop/rollout")
            let waiting = ContinuousClock.now
            while (view.step != 2 || view.split != SplitBody(blue: 1, green: 3)) && ContinuousClock.now - waiting < .seconds(20) {
                try await Task.sleep(for: .milliseconds(50))
                view = try await watcher.send("GET", "/v1/routes/shop/rollout")
            }
            try #require(view.step == 2 && view.state == "shifting", "\(view)")
            driver.server.send(SIGKILL)
            let killed = ContinuousClock.now

            // One of the others takes it over at step 2 within the lease time (4 s) and a
            // renewal round, and the release promotes.
            // A replica runs it when its metrics say so (any replica answers rollout reads, from
            // the stored release when nobody runs it).
            var continued: (Int, RolloutView)?
            while continued == nil && ContinuousClock.now - killed < .seconds(15) {
                for (index, replica) in others.enumerated() where continued == nil {
                    let metrics = try await curl(["-sS", "http://127.0.0.1:\(replica.admin)/metrics"]).output
                    guard metrics.contains("teal_release_driver{route=\"shop\"} 1") else { continue }
                    let client = try AdminClient(address: "127.0.0.1:\(replica.admin)", token: nil)
                    continued = (index, try await client.send("GET", "/v1/routes/shop/rollout"))
                }
                if continued == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let takeover = ContinuousClock.now - killed
            let (index, resumed) = try #require(continued, "no replica took the release over")
            #expect(resumed.step ?? 0 >= 2 && takeover > .seconds(3) && takeover < .seconds(6), "\(resumed) after \(takeover)")
            print("release taken over by another replica \(takeover) after kill -9, at step \(resumed.step ?? 0)")
            let follower = try AdminClient(address: "127.0.0.1:\(others[index].admin)", token: nil)
            let outcome = await follower.waitForOutcome(route: "shop", timeout: .seconds(30))
            #expect(outcome.code == 0, "\(String(describing: outcome.view))")
            let events: [EventView] = try await follower.send("GET", "/v1/events?route=shop")
            #expect(events.contains { $0.text.contains("taken over") && $0.text.contains("step 2") }, "\(events.map(\.text))")
            for load in loads { _ = await load.stop() }
        }
    }

    /// The backends that answer the first `count` requests through the proxy at `port`.
    static func firstAnswers(port: Int, count: Int) async throws -> [String] {
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        var answers: [String] = []
        for _ in 0..<count {
            let (data, _) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)/")!)
            answers.append(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return answers
    }

    @Test("all three replicas killed with -9 mid-release and restarted: each serves the stored split from its first request, and the release resumes from its step and promotes")
    func allKilled() async throws {
        try await Self.withSharedState(plan: "[3/1, 1/3, 0/1]", hold: "3s") { driver, state, cluster in
            var others = [try await Self.replica(of: driver, state: state), try await Self.replica(of: driver, state: state)]
            defer { for replica in others { replica.process.send(SIGKILL) } }
            let load = driver.load()
            let start = try await driver.teal(["rollout", "start", "shop"])
            #expect(start.status == 0, "\(start.output)")
            var view = try await driver.rollout()
            let waiting = ContinuousClock.now
            while (view.step != 2 || view.split != SplitBody(blue: 1, green: 3)) && ContinuousClock.now - waiting < .seconds(20) {
                try await Task.sleep(for: .milliseconds(50))
                view = try await driver.rollout()
            }
            try #require(view.step == 2, "\(view)")
            _ = await load.stop()

            for replica in others { replica.process.send(SIGKILL) }
            for replica in others { _ = await replica.process.waitForExit(timeout: .seconds(10)) }
            try await driver.restart(with: SIGKILL)
            others = [try await Self.replica(of: driver, state: state), try await Self.replica(of: driver, state: state)]
            // Every replica serves step 2's split (1 blue in 4) from its very first request.
            for port in [driver.proxyPort] + others.map(\.proxy) {
                let first = try await Self.firstAnswers(port: port, count: 8)
                #expect(first.filter { $0 == "blue" }.count == 2 && first.filter { $0 == "green" }.count == 6, "\(first)")
            }
            // The release resumes on one of them (once its dead driver's lease has run out) and promotes.
            let resumed = driver.load()
            let admin = try AdminClient(address: "127.0.0.1:\(driver.adminPort)", token: nil)
            let outcome = await admin.waitForOutcome(route: "shop", timeout: .seconds(40))
            _ = await resumed.stop()
            #expect(outcome.code == 0, "\(String(describing: outcome.view)) \(String(describing: outcome.error))")
            let events: [EventView] = try await admin.send("GET", "/v1/events?route=shop")
            #expect(events.contains { $0.text.contains("taken over") && $0.text.contains("step 2") }, "\(events.map(\.text))")
        }
    }

    @Test("verdicts on every replica's traffic: green failing behind the two replicas that take all the load rolls back the release the third runs, and all three serve all-blue within 1 s")
    func fleetVerdict() async throws {
        try await Self.withSharedState(plan: "[1/1, 0/1]", hold: "60s", green: "bad") { driver, state, cluster in
            let others = [try await Self.replica(of: driver, state: state), try await Self.replica(of: driver, state: state)]
            defer { for replica in others { replica.process.send(SIGKILL) } }
            // The driver gets no traffic at all: only the others' counts can tell green fails.
            let loads = others.map { Load(url: URL(string: "http://127.0.0.1:\($0.proxy)/")!, clients: 2) }
            let start = try await driver.teal(["rollout", "start", "shop"])
            #expect(start.status == 0, "\(start.output)")
            let started = ContinuousClock.now
            let admins = [driver.adminPort] + others.map(\.admin)
            var allBlueAt: [Int: Duration] = [:]
            while allBlueAt.count < admins.count && ContinuousClock.now - started < .seconds(20) {
                for admin in admins where allBlueAt[admin] == nil {
                    let view: RouteView = try await AdminClient(address: "127.0.0.1:\(admin)", token: nil).send("GET", "/v1/routes/shop")
                    if view.split.green == 0 && view.rollout == "rolled-back" || view.split.green == 0 && admin != driver.adminPort
                        && allBlueAt[driver.adminPort] != nil {
                        allBlueAt[admin] = ContinuousClock.now - started
                    }
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            for load in loads { _ = await load.stop() }
            let rollout = try await driver.rollout()
            #expect(rollout.state == "rolled-back" && (rollout.reason ?? "").contains("error rate"), "\(rollout)")
            #expect(allBlueAt.count == 3, "\(allBlueAt)")
            let verdict = allBlueAt[driver.adminPort] ?? .seconds(99)
            let slowest = allBlueAt.values.max() ?? .seconds(99)
            print("fleet verdict: driver all-blue \(verdict) after the release started, every replica \(slowest)")
            #expect(slowest - verdict < .seconds(1), "\(allBlueAt)")
        }
    }

    @Test("two replicas writing splits at once: no lost or torn state; both end on the newest stored split")
    func concurrentSplits() async throws {
        try await Self.withSharedState { first, state, cluster in
            let second = try await Self.replica(of: first, state: state)
            defer { second.process.send(SIGKILL) }
            let clients = [try AdminClient(address: "127.0.0.1:\(first.adminPort)", token: nil),
                           try AdminClient(address: "127.0.0.1:\(second.admin)", token: nil)]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        for change in 0..<40 {
                            let _: RouteView = try await client.send("PUT", "/v1/routes/shop/split",
                                                                     body: SplitBody(blue: 1 + index, green: 1 + change % 5))
                        }
                    }
                }
                try await group.waitForAll()
            }
            // The stored record is whole, and both replicas come to serve it.
            let stored = try await cluster.psql("SELECT record::jsonb -> 'split' FROM teal_routes WHERE name = 'shop'", database: "teal")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(stored.utf8)) as? [String: Int], "\(stored)")
            let expected = SplitBody(blue: json["blue"] ?? -1, green: json["green"] ?? -1)
            #expect([1, 2].contains(expected.blue) && (1...5).contains(expected.green), "\(stored)")
            let start = ContinuousClock.now
            var views: [RouteView] = []
            repeat {
                views = []
                for client in clients { views.append(try await client.send("GET", "/v1/routes/shop")) }
                if views.allSatisfy({ $0.split == expected }) { break }
                try await Task.sleep(for: .milliseconds(20))
            } while ContinuousClock.now - start < .seconds(10)
            #expect(views.allSatisfy { $0.split == expected }, "stored \(expected), served \(views.map(\.split))")
        }
    }

    @Test("PostgreSQL stopped under load: both replicas serve on with zero failed requests, a split write answers 503 naming the store; back: the other replica catches up")
    func databaseAway() async throws {
        try await Self.withSharedState { first, state, cluster in
            let second = try await Self.replica(of: first, state: state)
            defer { second.process.send(SIGKILL) }
            let writer = try AdminClient(address: "127.0.0.1:\(first.adminPort)", token: nil)
            let reader = try AdminClient(address: "127.0.0.1:\(second.admin)", token: nil)
            let loads = [first.load(clients: 2), Load(url: URL(string: "http://127.0.0.1:\(second.proxy)/")!, clients: 2)]

            try await cluster.pause()
            do {
                let _: RouteView = try await writer.send("PUT", "/v1/routes/shop/split", body: SplitBody(blue: 1, green: 1))
                Issue.record("a split was accepted with the database away")
            } catch let error as AdminError {
                #expect(error.code == 503 && error.message.contains("state store"), "\(error)")
            }
            let unchanged: RouteView = try await reader.send("GET", "/v1/routes/shop")
            #expect(unchanged.split == SplitBody(blue: 1, green: 0))
            try await Task.sleep(for: .seconds(1))
            try await cluster.resume()

            // Back: the write goes through, and the other replica (its feed reconnected) serves it.
            var written = false
            for _ in 0..<40 where !written {
                do {
                    let _: RouteView = try await writer.send("PUT", "/v1/routes/shop/split", body: SplitBody(blue: 1, green: 2))
                    written = true
                } catch {
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
            #expect(written)
            let start = ContinuousClock.now
            while ContinuousClock.now - start < .seconds(15) {
                let view: RouteView = try await reader.send("GET", "/v1/routes/shop")
                if view.split == SplitBody(blue: 1, green: 2) { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let caughtUp: RouteView = try await reader.send("GET", "/v1/routes/shop")
            #expect(caughtUp.split == SplitBody(blue: 1, green: 2), "caught up after \(ContinuousClock.now - start)")
            var counts: [String: Int] = [:]
            for load in loads { counts.merge(await load.stop(), uniquingKeysWith: +) }
            #expect(counts.keys.allSatisfy { $0 != "0" && !$0.hasPrefix("5") }, "\(counts)")
            #expect((counts["200"] ?? 0) > 100, "\(counts)")

            // With the database away again, a replica still stops promptly on SIGTERM (its
            // store calls do not hold up the shutdown).
            try await cluster.pause()
            try await Task.sleep(for: .milliseconds(500))
            let stopping = ContinuousClock.now
            second.process.send(SIGTERM)
            let status = await second.process.waitForExit(timeout: .seconds(20))
            #expect(status == 0 && ContinuousClock.now - stopping < .seconds(5), "exit \(String(describing: status)) after \(ContinuousClock.now - stopping)")
            try await cluster.resume()
        }
    }

    @Test("PostgreSQL away and green failing by one replica's own traffic: that replica puts its split back to blue alone; once the database is back it journals that and the release is rolled back fleet-wide")
    func offlineRollback() async throws {
        try await Self.withSharedState(plan: "[1/1, 0/1]", hold: "60s", green: "bad") { driver, state, cluster in
            let other = try await Self.replica(of: driver, state: state)
            defer { other.process.send(SIGKILL) }
            let replica = try AdminClient(address: "127.0.0.1:\(other.admin)", token: nil)
            let start = try await driver.teal(["rollout", "start", "shop"])
            #expect(start.status == 0, "\(start.output)")
            // No traffic yet: green's failures are unseen until the database is away.
            var view: RouteView = try await replica.send("GET", "/v1/routes/shop")
            let waiting = ContinuousClock.now
            while view.split != SplitBody(blue: 1, green: 1) && ContinuousClock.now - waiting < .seconds(10) {
                try await Task.sleep(for: .milliseconds(20))
                view = try await replica.send("GET", "/v1/routes/shop")
            }
            try #require(view.split == SplitBody(blue: 1, green: 1), "\(view)")

            try await cluster.pause()
            let away = ContinuousClock.now
            let load = Load(url: URL(string: "http://127.0.0.1:\(other.proxy)/")!, clients: 2)
            while view.split.green > 0 && ContinuousClock.now - away < .seconds(15) {
                try await Task.sleep(for: .milliseconds(20))
                view = try await replica.send("GET", "/v1/routes/shop")
            }
            let rolledBack = ContinuousClock.now - away
            let counts = await load.stop()
            #expect(view.split.green == 0 && rolledBack < .seconds(5), "\(view) after \(rolledBack)")
            print("offline rollback: the replica was all-blue \(rolledBack) after the database stopped; answers \(counts)")
            // Its users get blue now.
            let after = Load(url: URL(string: "http://127.0.0.1:\(other.proxy)/")!, clients: 1)
            try await Task.sleep(for: .milliseconds(300))
            let blueOnly = await after.stop()
            #expect(blueOnly["500"] == nil && (blueOnly["blue"] ?? 0) > 0, "\(blueOnly)")

            // Away past the lease time (4 s): the driver loses its lease too, and the release is
            // taken over when the database is back; the report reaches it there.
            try await Task.sleep(until: away + .seconds(5), clock: .continuous)
            try await cluster.resume()
            let back = ContinuousClock.now
            // The release ends rolled back: by the alert this replica sends, or by the driver's
            // own verdict once this replica's counts reach it, whichever comes first.
            var rollout = try await driver.rollout()
            while rollout.state != "rolled-back" && ContinuousClock.now - back < .seconds(30) {
                try await Task.sleep(for: .milliseconds(100))
                if let latest = try? await driver.rollout() { rollout = latest }
            }
            let reason = rollout.reason ?? ""
            #expect(rollout.state == "rolled-back" && (reason.contains("teal-replica-rollback") || reason.contains("error rate")), "\(rollout)")
            print("offline rollback: release rolled back fleet-wide \(ContinuousClock.now - back) after the database came back: \(reason)")
            var events: [EventView] = []
            while !events.contains(where: { $0.source == "replica" }) && ContinuousClock.now - back < .seconds(30) {
                events = try await replica.send("GET", "/v1/events?route=shop")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(events.contains { $0.source == "replica" && $0.text.contains("while the state store was away") }, "\(events.map(\.text))")
            let driverView: RouteView = try await AdminClient(address: "127.0.0.1:\(driver.adminPort)", token: nil).send("GET", "/v1/routes/shop")
            #expect(driverView.split.green == 0, "\(driverView)")
        }
    }

    @Test("no database server, a wrong password, a newer schema: teal serve exits 2 naming host, port, database and the cause")
    func startupRefused() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("teal-pg-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("route: shop\nblue: {version: \"1.0\", instances: [\"127.0.0.1:9\"]}\n".utf8)
            .write(to: folder.appendingPathComponent("shop.yaml"))
        func serve(_ state: String, _ more: [String] = []) async throws -> (status: Int32, output: String) {
            try await TealProcess.run(["serve", "--routes", folder.path, "--listen", "127.0.0.1:\(try freePort())",
                                       "--admin", "127.0.0.1:\(try freePort())", "--state", state] + more, timeout: .seconds(60))
        }
        func clean(_ output: String) -> Bool {
            !output.contains("Fatal error") && !output.contains("Stack dump") && !output.contains("PSQLError")
        }

        let port = try freePort()
        let nothing = try await serve("postgres://teal@127.0.0.1:\(port)/shop")
        #expect(nothing.status == 2 && clean(nothing.output), "\(nothing.output)")
        #expect(nothing.output.contains("teal: state database postgres://teal@127.0.0.1:\(port)/shop cannot be read: cannot connect:")
                && nothing.output.lowercased().contains("refused") && nothing.output.contains("check that the database server runs"),
                "\(nothing.output)")

        try await PostgresCluster.with(password: "right") { cluster in
            try await cluster.createDatabase("teal")
            let wrong = try await serve(cluster.url(database: "teal"), ["--state-password-file", try Self.passwordFile("wrong", in: folder)])
            #expect(wrong.status == 2 && clean(wrong.output) && !wrong.output.contains("wrong\n"), "\(wrong.output)")
            #expect(wrong.output.contains("postgres://teal@127.0.0.1:\(cluster.port)/teal cannot be read: password authentication failed for user \"teal\""),
                    "\(wrong.output)")

            let missing = try await serve(cluster.url(database: "nosuch", withPassword: true))
            #expect(missing.status == 2 && missing.output.contains("/nosuch cannot be read: database \"nosuch\" does not exist"), "\(missing.output)")

            // A database that a newer Teal migrated.
            try await cluster.psql("CREATE TABLE teal_schema_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
                                   + "INSERT INTO teal_schema_migrations (id) VALUES ('v1'), ('v7')", database: "teal")
            let newer = try await serve(cluster.url(database: "teal", withPassword: true))
            #expect(newer.status == 2 && newer.output.contains("was written by a newer Teal (schema migrations v7 are unknown to this one)"),
                    "\(newer.output)")

            let takeover = try await serve(cluster.url(database: "teal", withPassword: true), ["--takeover"])
            #expect(takeover.status != 0 && takeover.output.contains("--takeover works only with a SQLite state file"), "\(takeover.output)")
        }
    }
}
