import Foundation
import Testing
import TealAdmin
import TealCore
import TealTestSupport

@Suite("teal serve restarts: durable state", .serialized)
struct RestartTests {
    @Test("kill -9 mid-release: the restarted router serves the same split from its first request and the release goes on from its step, hold counted from the persisted step start")
    func crashRecovery() async throws {
        try await ServedRouter.with(plan: "[1/3, 0/1]", hold: "8s") { router in
            var load = router.load()
            let start = try await router.teal(["rollout", "start", "shop"])
            #expect(start.status == 0, "\(start.output)")
            // 2 s into step 1 (1/3): the hold has 6 s left.
            try await Task.sleep(for: .seconds(2))
            let before = try await router.rollout()
            #expect(before.state == "shifting" && before.step == 1 && before.split == SplitBody(blue: 1, green: 3), "\(before)")
            _ = await load.stop()

            try await router.restart(with: SIGKILL)

            // The very first requests follow the stored split: 1 blue and 3 green in every 4.
            var first: [String] = []
            for _ in 0..<8 { first.append(try await router.request()) }
            #expect(first.filter { $0 == "blue" }.count == 2 && first.filter { $0 == "green" }.count == 6, "\(first)")
            let after = try await router.rollout()
            #expect(after.state == "shifting" && after.step == 1, "\(after)")

            load = router.load()
            let promoted = try await router.teal(["rollout", "wait", "shop", "--timeout", "40"])
            _ = await load.stop()
            #expect(promoted.status == 0, "\(promoted.output)")
            let events = try await router.events()
            let stepOne = try #require(events.first { $0.text.hasPrefix("step 1/2") })
            let stepTwo = try #require(events.first { $0.text.hasPrefix("step 2/2") })
            #expect(events.contains { $0.source == "restart" && $0.text.hasPrefix("restored after a restart at step 1/2") }, "\(events.map(\.text))")
            // Counted from the persisted start: step 2 began 8 s (plus evaluation slack) after step 1,
            // not 8 s after the restart (which was 2 s into step 1).
            let gap = stepTwo.time.timeIntervalSince(stepOne.time)
            #expect(gap >= 7.9 && gap < 9.8, "step 1 → step 2 took \(gap) s")

            // A promoted release stays promoted across another crash, on the new blue.
            try await router.restart(with: SIGKILL)
            let final = try await router.rollout()
            #expect(final.state == "promoted", "\(final)")
            var answers: Set<String> = []
            for _ in 0..<4 { answers.insert(try await router.request()) }
            #expect(answers == ["green"], "the promoted version (green's instance) serves everything: \(answers)")
        }
    }

    @Test("a rolled-back release stays rolled back after a restart, and autoStart does not retry it")
    func rolledBackStays() async throws {
        // The route file's green answers only 500s and its release starts by itself.
        try await ServedRouter.with(plan: "[1/1, 0/1]", hold: "30s", green: "bad", autoStart: true) { router in
            let load = router.load()
            let rolledBack = try await router.teal(["rollout", "wait", "shop", "--timeout", "30"])
            _ = await load.stop()
            #expect(rolledBack.status == 1, "\(rolledBack.output)")
            try await router.restart(with: SIGKILL)
            let view = try await router.rollout()
            #expect(view.state == "rolled-back" && view.reason?.contains("error rate") == true, "\(view)")
            let started = try await router.events().filter { $0.text.hasPrefix("release of") }
            #expect(started.count == 1 && started.first?.source == "route-file", "\(started)")
            var answers: Set<String> = []
            for _ in 0..<6 { answers.insert(try await router.request()) }
            #expect(answers == ["blue"], "\(answers)")
        }
    }

    @Test("a corrupt state file: teal serve refuses to start, says what is wrong and what to do, and leaves the file alone")
    func corruptStateFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-state-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "route: shop\nblue: {instances: [\"127.0.0.1:9\"]}\n".write(to: directory.appendingPathComponent("shop.yaml"), atomically: true, encoding: .utf8)
        let state = directory.appendingPathComponent("state.sqlite")
        let garbage = Data("not a database at all, but somebody's notes\n".utf8)
        try garbage.write(to: state)
        let result = try await TealProcess.run(["serve", "--routes", directory.path, "--listen", "127.0.0.1:\(try freePort())",
                                                "--admin", "127.0.0.1:\(try freePort())", "--state", state.path])
        #expect(result.status == 2, "\(result.output)")
        #expect(result.output.contains("state file \(state.path) cannot be read: not a SQLite database"), "\(result.output)")
        #expect(result.output.contains("refusing to start"), "\(result.output)")
        #expect(try Data(contentsOf: state) == garbage)
    }
}

@Suite("Hot reload and graceful drain of teal serve", .serialized)
struct ReloadTests {
    @Test("reload under load: valid changes (SIGHUP and POST /v1/reload) apply with no failed request; an invalid file is refused with its error and the running routes stay")
    func reloadUnderLoad() async throws {
        try await ServedRouter.with { router in
            let load = router.load(clients: 4)
            try await Task.sleep(for: .milliseconds(500))

            // Add an instance, by SIGHUP.
            try router.writeRoutes(blue: ["blue", "blue2"])
            router.server.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(700))

            // Remove the first one, through the API (it is drained).
            try router.writeRoutes(blue: ["blue2"])
            let admin = try AdminClient(address: "127.0.0.1:\(router.adminPort)", token: nil)
            let summary: ReloadSummary = try await admin.send("POST", "/v1/reload")
            #expect(summary.changed == ["shop"] && summary.added.isEmpty && summary.removed.isEmpty)
            try await Task.sleep(for: .milliseconds(500))

            // An invalid file: refused with file, line and key; the routes stay as they were.
            try router.writeRoutes(blue: ["blue2"], extra: "rollout2: {steps: [1/1]}\n")
            await #expect {
                let _: ReloadSummary = try await admin.send("POST", "/v1/reload")
            } throws: { error in
                let message = (error as? AdminError)?.message ?? "\(error)"
                return (error as? AdminError)?.code == 400 && message.contains("shop.yaml:11") && message.contains("rollout2")
            }
            router.server.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            let counts = await load.stop()

            #expect(counts.keys.allSatisfy { ["200", "blue", "blue2"].contains($0) }, "every request answered 200: \(counts)")
            #expect(counts["blue", default: 0] > 0 && counts["blue2", default: 0] > 0, "\(counts)")
            var after: Set<String> = []
            for _ in 0..<6 { after.insert(try await router.request()) }
            #expect(after == ["blue2"], "the removed instance gets nothing, the invalid file changed nothing: \(after)")
            let events = try await router.events()
            #expect(events.contains { $0.source == "signal" && $0.text.hasPrefix("route changed by a reload") }, "\(events.map(\.text))")
            #expect(router.server.log.contains("reload refused"), "\(router.server.log)")
        }
    }

    @Test("SIGTERM: stop accepting, the slow in-flight request completes, then exit 0; --drain-timeout bounds the wait")
    func gracefulDrain() async throws {
        try await ServedRouter.with(blue: ["slow"]) { router in
            let inFlight = Task { try await router.request() }
            try await router.waitUntilRequestInFlight()
            let signalled = ContinuousClock.now
            router.server.send(SIGTERM)
            try await Task.sleep(for: .milliseconds(300))
            #expect(!TealProcess.canConnect(port: router.proxyPort), "still accepting after SIGTERM")
            #expect(try await inFlight.value == "slow")
            let status = await router.server.waitForExit(timeout: .seconds(10))
            #expect(status == 0, "\(router.server.log)")
            #expect(ContinuousClock.now - signalled < .seconds(5))
        }
        try await ServedRouter.with(extraArguments: ["--drain-timeout", "300ms"], blue: ["slow"]) { router in
            let inFlight = Task { try? await router.request() }
            try await router.waitUntilRequestInFlight()
            let signalled = ContinuousClock.now
            router.server.send(SIGTERM)
            let status = await router.server.waitForExit(timeout: .seconds(10))
            let waited = ContinuousClock.now - signalled
            #expect(status == 0 && waited < .milliseconds(1200), "exit \(String(describing: status)) after \(waited)")
            #expect(router.server.log.contains("closing connections still open after the drain timeout"))
            _ = await inFlight.value
        }
    }

    @Test("teal serve --takeover replaces a running one under load with no failed request; without --takeover a second one refuses to start")
    func takeoverUnderLoad() async throws {
        try await ServedRouter.with { router in
            let refused = try await TealProcess.run(router.serveArguments)
            #expect(refused.status == 2 && refused.output.contains("is using the state file") && refused.output.contains("--takeover"),
                    "\(refused.output)")
            // Another state file, same port: still refused, not silently sharing the port.
            var otherState = router.serveArguments
            if let index = otherState.firstIndex(of: "--state") { otherState[index + 1] += ".other" }
            let shared = try await TealProcess.run(otherState)
            #expect(shared.status == 2 && shared.output.contains("is in use by another program"), "\(shared.output)")

            let load = router.load(clients: 4)
            try await Task.sleep(for: .milliseconds(500))
            let old = router.server
            let successor = try TealProcess(router.serveArguments + ["--takeover"])
            let oldStatus = await old.waitForExit(timeout: .seconds(20))
            #expect(oldStatus == 0, "the old teal serve drained and exited: \(old.log)")
            try await successor.waitUntilServing(port: router.adminPort)
            try await Task.sleep(for: .milliseconds(500))
            let counts = await load.stop()
            #expect(counts.keys.allSatisfy { ["200", "blue"].contains($0) }, "every request answered 200: \(counts)")
            #expect(counts["200", default: 0] > 100, "\(counts)")
            #expect(successor.log.contains("took over from the previous teal serve"), "\(successor.log)")
            successor.send(SIGTERM)
            #expect(await successor.waitForExit(timeout: .seconds(10)) == 0)
        }
    }
}
