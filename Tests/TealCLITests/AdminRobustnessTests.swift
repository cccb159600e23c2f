import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TealAdmin
import TealTestSupport

/// What an operator, a route file or the traffic counters can do to a live `teal serve`: each
/// input here killed the process once (and all traffic with it), or let it lose state.
@Suite("teal serve survives what operators and counters throw at it", .serialized)
struct AdminRobustnessTests {
    /// Sends one admin request; its status and body.
    static func admin(_ router: ServedRouter, _ method: String, _ path: String, body: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(router.adminPort)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// Sends requests (a step's hold counts from green's first request) until the release of
    /// `shop` is promoted, at most 15 s; whether it was.
    static func promoteUnderTraffic(_ router: ServedRouter) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            _ = try? await router.request()
            if (try? await router.rollout().state) == "promoted" { return true }
        }
        return false
    }

    @Test("huge split weights through the API, a release plan and a reloaded route file are refused with 400 and the router serves on")
    func hugeWeights() async throws {
        try await ServedRouter.with { router in
            let split = try await Self.admin(router, "PUT", "/v1/routes/shop/split", body: #"{"blue":9223372036854775807,"green":1}"#)
            #expect(split.status == 400, "\(split)")
            let plan = try await Self.admin(router, "POST", "/v1/routes/shop/rollout", body: #"{"steps":["9223372036854775807/1"]}"#)
            #expect(plan.status == 400 && plan.body.contains("steps[0]"), "\(plan)")
            try router.writeRoutes(blue: ["blue"], extra: "")
            let file = router.directory.appendingPathComponent("shop.yaml")
            let text = try String(contentsOf: file, encoding: .utf8).replacingOccurrences(of: "split: 1/0", with: "split: 9223372036854775807/1")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let reload = try await Self.admin(router, "POST", "/v1/reload")
            #expect(reload.status == 400 && reload.body.contains("9223372036854775807/1"), "\(reload)")
            #expect(router.server.process.isRunning, "\(router.server.log)")
            #expect(try await router.request() == "blue")
        }
    }

    @Test("release requests over the input caps are refused naming the cap; duplicate instances are refused")
    func releaseCaps() async throws {
        try await ServedRouter.with { router in
            let green = router.ports["green"]!
            let steps = (0...100).map { _ in "\"1/1\"" }.joined(separator: ",")
            let cases: [(String, String)] = [
                (#"{"steps":[\#(steps)]}"#, "a plan has at most 100"),
                (#"{"green":{"version":"\#(String(repeating: "v", count: 129))","instances":["127.0.0.1:\#(green)"]}}"#, "at most 128"),
                (#"{"green":{"instances":["127.0.0.1:\#(green)","127.0.0.1:\#(green)"]}}"#, "already listed as green.instances[0]"),
                (#"{"hold":"9000h"}"#, "is not a duration, e.g. 30s"),
            ]
            for (body, expected) in cases {
                let answer = try await Self.admin(router, "POST", "/v1/routes/shop/rollout", body: body)
                #expect(answer.status == 400 && answer.body.contains(expected), "\(body.prefix(80)): \(answer)")
            }
            let events = try await router.events()
            #expect(!events.contains { $0.text.contains("release") || $0.text.contains("step") }, "\(events)")
        }
    }

    @Test("GET /v1/routes right after a promotion (traffic windows of both colours swapped) answers, and blue's rate is the promoted pool's")
    func routesAfterPromotion() async throws {
        try await ServedRouter.with(plan: "[1/1, 0/1]", hold: "1s") { router in
            for _ in 0..<80 { _ = try await router.request() }
            // The issue's reproduction: the first traffic leaves the 10 s window before the release.
            try await Task.sleep(for: .seconds(11))
            let start = try await Self.admin(router, "POST", "/v1/routes/shop/rollout", body: #"{"steps":["1/1","0/1"],"hold":"1s"}"#)
            #expect(start.status == 201, "\(start)")
            #expect(try await Self.promoteUnderTraffic(router))
            for _ in 0..<20 {
                let routes = try await Self.admin(router, "GET", "/v1/routes")
                #expect(routes.status == 200, "\(routes)")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(router.server.process.isRunning, "teal serve died: \(router.server.log)")
            let view: [RouteView] = try await AdminClient(address: "127.0.0.1:\(router.adminPort)", token: nil).send("GET", "/v1/routes")
            // At most ~40 requests a second were sent: a wrapped counter would show billions.
            #expect(view[0].blue.requestsPerSecond < 1000, "\(view[0].blue)")
        }
    }

    @Test("200 concurrent split changes: each answer shows its own split and each journal entry its own predecessor")
    func concurrentSplits() async throws {
        try await ServedRouter.with { router in
            let answers = try await withThrowingTaskGroup(of: (Int, Int, String).self) { group in
                for blue in 1...200 {
                    group.addTask {
                        let answer = try await Self.admin(router, "PUT", "/v1/routes/shop/split", body: #"{"blue":\#(blue),"green":1}"#)
                        return (blue, answer.status, answer.body)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (blue, status, body) in answers {
                #expect(status == 200, "\(body)")
                let view = try JSONDecoder().decode(RouteView.self, from: Data(body.utf8))
                #expect(view.split == SplitBody(blue: blue, green: 1), "PUT \(blue)/1 answered \(view.split)")
            }
            // The changes form one chain from 1/0: every split is replaced exactly once, but the last.
            var next: [String: String] = [:]
            for event in try await router.events() where event.text.hasPrefix("split set to ") {
                let words = event.text.split(separator: " ")
                let to = String(words[3]), was = String(words.last!.dropLast())
                #expect(next[was] == nil, "\(was) replaced twice: by \(next[was]!) and \(to)")
                next[was] = to
            }
            #expect(next.count == 200)
            var current = "1/0", steps = 0
            while let following = next[current], steps <= 200 { current = following; steps += 1 }
            #expect(steps == 200, "the journal's chain breaks after \(steps) changes at \(current)")
        }
    }

    @Test("a release with a smoke gate is one row in the state file")
    func oneRowPerRelease() async throws {
        try await ServedRouter.with(plan: "[1/1, 0/1]", hold: "200ms") { router in
            // The smoke results come back while the start is still being saved: two saves at once.
            try router.writeRoutes(blue: ["blue"], extra: "  smoke: [{path: /healthz, expect: 200}]\n")
            let reload = try await Self.admin(router, "POST", "/v1/reload")
            #expect(reload.status == 200, "\(reload)")
            let start = try await Self.admin(router, "POST", "/v1/routes/shop/rollout")
            #expect(start.status == 201, "\(start)")
            #expect(try await Self.promoteUnderTraffic(router))
            let database = router.directory.appendingPathComponent("state.sqlite").path
            let count = try await TealProcess.runCommand(["/usr/bin/python3", "-c",
                "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from releases').fetchone()[0])", database])
            #expect(count.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(count)")
        }
    }

    /// Opens a TCP connection to the loopback port and leaves it open (idle); `nil` when it
    /// could not connect within a second. With `from127002`, the connection comes from
    /// 127.0.0.2, so its local port cannot take one that another test picked on 127.0.0.1.
    static func openIdleConnection(port: Int, from127002: Bool = false) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if from127002 {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr("127.0.0.2")
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard bound else { close(fd); return nil }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { close(fd); return nil }
        return fd
    }

    static func openDescriptors(pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    @Test("5,000 idle connections to the admin port: teal holds at most its admin cap, the proxy answers and the admin API serves a new client")
    func idleAdminConnections() async throws {
        try await ServedRouter.with { router in
            let before = Self.openDescriptors(pid: router.server.pid)
            // Blocking connects, on a thread of their own: not on the few threads every test's tasks share.
            let port = router.adminPort
            let held = await withCheckedContinuation { (continuation: CheckedContinuation<[Int32], Never>) in
                Thread { continuation.resume(returning: (0..<5000).compactMap { _ in Self.openIdleConnection(port: port, from127002: true) }) }.start()
            }
            defer { for fd in held { close(fd) } }
            #expect(held.count >= 4000, "only \(held.count) connections opened")
            try await Task.sleep(for: .milliseconds(500))
            let during = Self.openDescriptors(pid: router.server.pid)
            // The admin listener keeps at most 512 connections; the rest were closed on accept.
            #expect(during - before <= 512 + 16, "teal holds \(during) descriptors, \(before) before the connections")
            #expect(router.server.process.isRunning)
            #expect(try await router.request() == "blue")
            let health = try await curl(["-s", "http://127.0.0.1:\(router.adminPort)/healthz"])
            #expect(health.output == "ok\n", "\(health)")
            let routes = try await Self.admin(router, "GET", "/v1/routes")
            #expect(routes.status == 200)
        }
    }

    /// Sends `text` on a new loopback connection and returns what comes back until the peer
    /// closes or 5 s pass.
    static func exchange(port: Int, _ text: String, keepOpen: Bool = false) -> (fd: Int32, answer: String)? {
        guard let fd = openIdleConnection(port: port) else { return nil }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = text.withCString { send(fd, $0, strlen($0), 0) }
        if keepOpen { return (fd, "") }
        var answer = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            answer += buffer[0..<count]
        }
        close(fd)
        return (fd, String(decoding: answer, as: UTF8.self))
    }

    @Test("at the admin cap with every connection in a request, a new connection gets 503 with Retry-After, and is served once one is free")
    func busyAdminCap() async throws {
        try await ServedRouter.with(extraArguments: ["--admin-max-connections", "2"]) { router in
            let port = router.adminPort
            // Two requests whose bodies never finish: both connections are in a request.
            let head = "PUT /v1/routes/shop/split HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            let busy = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Int32], any Error>) in
                Thread {
                    let fds = (0..<2).compactMap { _ in Self.exchange(port: port, head, keepOpen: true)?.fd }
                    Thread.sleep(forTimeInterval: 0.3)
                    continuation.resume(returning: fds)
                }.start()
            }
            #expect(busy.count == 2)
            let refused = await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
                Thread { continuation.resume(returning: Self.exchange(port: port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")?.answer ?? "") }.start()
            }
            #expect(refused.hasPrefix("HTTP/1.1 503") && refused.contains("Retry-After: 1") && refused.contains("connection limit"), "\(refused)")
            for fd in busy { close(fd) }
            try await Task.sleep(for: .milliseconds(300))
            let health = try await curl(["-s", "http://127.0.0.1:\(port)/healthz"])
            #expect(health.output == "ok\n", "\(health)")
        }
    }
}
