import Foundation
import Hummingbird
import HummingbirdTesting
import NIOPosix
import Testing
import TealAdmin
import TealCore
import TealProxy
import TealServer

/// The admin API over a real router (routes on loopback ports nobody listens on: these tests
/// need no traffic), driven through Hummingbird's router test client.
struct AdminHarness {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let router: TealRouter
    let token = "s3cret"

    init() async throws {
        let blue = PoolSpec(version: "1.0", instances: [InstanceAddress(host: "127.0.0.1", port: 1)])
        let green = PoolSpec(version: "1.1", instances: [InstanceAddress(host: "127.0.0.1", port: 2)])
        var route = Route(name: "shop", blue: blue, green: green)
        route.health.enabled = false
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 2, green: 4)!), PlanStep(split: Split(blue: 0, green: 1)!)])
        policy.hold = .seconds(600)
        route.rollout = policy
        var configuration = ProxyConfiguration()
        configuration.listenPort = 0
        router = TealRouter(routes: [route], configuration: configuration, group: Self.group)
        try await router.start()
    }

    func run(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        // Each harness runs once; the router is shut down at the end.
        let app = Application(router: AdminServer.router(backend: RouterAdminBackend(router: router), token: token))
        try await app.test(.router) { client in try await body(client) }
        await router.shutdown()
    }

    var auth: HTTPFields { [.authorization: "Bearer \(token)"] }

    static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
}

extension TestResponse {
    var text: String { String(buffer: body) }
}

@Suite("Admin API")
struct AdminAPITests {
    @Test("healthz needs no token; /v1 needs the right bearer token (401 with WWW-Authenticate)")
    func auth() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/routes", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] == "Bearer realm=\"teal\"")
                #expect(response.text.contains("Authorization: Bearer TOKEN"))
            }
            try await client.execute(uri: "/v1/routes", method: .get, headers: [.authorization: "Bearer wrong"]) {
                #expect($0.status == .unauthorized)
                #expect($0.text.contains("not valid"))
            }
            try await client.execute(uri: "/v1/routes", method: .get, headers: harness.auth) { response in
                #expect(response.status == .ok)
                #expect(response.text.contains("\"name\" : \"shop\""))
            }
        }
    }

    @Test("routes: one route in detail, unknown routes are 404")
    func routes() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            try await client.execute(uri: "/v1/routes/shop", method: .get, headers: harness.auth) { response in
                #expect(response.status == .ok)
                let route = try JSONDecoder().decode(RouteView.self, from: Data(buffer: response.body))
                #expect(route.blue.version == "1.0" && route.green?.instances.first?.address == "127.0.0.1:2")
                #expect(route.split == SplitBody(blue: 1, green: 0))
            }
            try await client.execute(uri: "/v1/routes/nope", method: .get, headers: harness.auth) {
                #expect($0.status == .notFound)
                #expect($0.text.contains("no route named nope"))
            }
        }
    }

    @Test("split: bad bodies are 400 naming the field and change nothing; a good one applies")
    func split() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let cases: [(String, String)] = [
                ("{\"blue\": \"x\", \"green\": 1}", "field blue must be a number"),
                ("{\"blue\": 1}", "missing field green"),
                ("{\"blue\": 0, \"green\": 0}", "split 0/0 is not valid"),
                ("not json", "not valid JSON"),
            ]
            for (body, message) in cases {
                try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: harness.auth, body: AdminHarness.json(body)) {
                    #expect($0.status == .badRequest, "\(body)")
                    #expect($0.text.contains(message), "\(body): \($0.text)")
                }
            }
            #expect(harness.router.controller.routes[0].split == .allBlue)
            try await client.execute(uri: "/v1/routes/nope/split", method: .put, headers: harness.auth, body: AdminHarness.json("{\"blue\": 1, \"green\": 1}")) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: harness.auth, body: AdminHarness.json("{\"blue\": 2, \"green\": 4}")) {
                #expect($0.status == .ok)
            }
            #expect(harness.router.controller.routes[0].split == Split(blue: 2, green: 4))
        }
    }

    @Test("releases: refused actions are 409 naming the state; start, status, abort; repeating abort is harmless")
    func releases() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            try await client.execute(uri: "/v1/routes/shop/rollout/promote", method: .post, headers: harness.auth) {
                #expect($0.status == .conflict)
                #expect($0.text.contains("has no release"))
            }
            try await client.execute(uri: "/v1/routes/shop/rollout/explode", method: .post, headers: harness.auth) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth,
                                     body: AdminHarness.json("{\"steps\": [\"2/4\", \"2-4\"]}")) {
                #expect($0.status == .badRequest)
                #expect($0.text.contains("steps[1]: \\\"2-4\\\" is not B/G"))
            }
            #expect(harness.router.releases.state(route: "shop") == nil)
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth,
                                     body: AdminHarness.json("{\"hold\": \"10m\", \"maxErrorRate\": 0.02}")) { response in
                #expect(response.status == .created)
                let view = try JSONDecoder().decode(RolloutView.self, from: Data(buffer: response.body))
                #expect(view.state == "shifting" && view.steps == ["2/4", "0/1"] && view.greenVersion == "1.1")
            }
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth) {
                #expect($0.status == .conflict)
                #expect($0.text.contains("already has a release that is shifting"))
            }
            try await client.execute(uri: "/v1/routes/shop/rollout/resume", method: .post, headers: harness.auth) {
                #expect($0.status == .ok)  // not paused: harmless
            }
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/routes/shop/rollout/abort", method: .post, headers: harness.auth) { response in
                    #expect(response.status == .ok)
                    let view = try JSONDecoder().decode(RolloutView.self, from: Data(buffer: response.body))
                    // All blue in the plan's terms: 2/4 → 0/1 aborts to 6/0.
                    #expect(view.state == "aborted" && view.split == SplitBody(blue: 6, green: 0))
                }
            }
            try await client.execute(uri: "/v1/routes/shop/rollout/promote", method: .post, headers: harness.auth) {
                #expect($0.status == .conflict)
                #expect($0.text.contains("cannot promote a release that is aborted"))
            }
            try await client.execute(uri: "/v1/events?route=shop", method: .get, headers: harness.auth) { response in
                #expect(response.status == .ok)
                let events = try JSONDecoder.iso8601.decode([EventView].self, from: Data(buffer: response.body))
                #expect(events.contains { $0.text.hasPrefix("aborted by api") })
            }
            try await client.execute(uri: "/v1/events?since=yesterday", method: .get, headers: harness.auth) {
                #expect($0.status == .badRequest)
                #expect($0.text.contains("not an ISO 8601 time"))
            }
        }
    }

    @Test("an Alertmanager webhook with a firing alert naming the route rolls its release back")
    func alertmanager() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let payload = """
                {"version": "4", "status": "firing", "receiver": "teal", "alerts": [
                  {"status": "firing", "labels": {"alertname": "HighErrorRate", "teal_route": "shop"}, "annotations": {}},
                  {"status": "resolved", "labels": {"alertname": "Old", "teal_route": "shop"}},
                  {"status": "firing", "labels": {"alertname": "Unrelated"}}]}
                """
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: AdminHarness.json(payload)) {
                #expect($0.status == .ok)
                #expect($0.text.contains("no running release"))
            }
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: AdminHarness.json(payload)) { response in
                #expect(response.status == .ok)
                let results = try JSONDecoder().decode([AlertResult].self, from: Data(buffer: response.body))
                #expect(results == [AlertResult(route: "shop", alert: "HighErrorRate", result: "rolled-back")])
            }
            // All blue in the plan's terms: 2/4 → 0/1 goes back to 6/0.
            #expect(harness.router.controller.routes[0].split.description == "6/0")
            #expect(await harness.router.releases.events(route: "shop").contains { $0.text == "rolled back: alert HighErrorRate fired" })
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: AdminHarness.json("{\"alerts\": 3}")) {
                #expect($0.status == .badRequest)
                #expect($0.text.contains("field alerts must be a list"))
            }
        }
    }

    @Test("the journal says who asked (api, cli, alert), and the alert route label is configurable")
    func journalSources() async throws {
        let harness = try await AdminHarness()
        let app = Application(router: AdminServer.router(backend: RouterAdminBackend(router: harness.router), token: harness.token,
                                                         routeLabel: "service"))
        try await app.test(.router) { client in
            var curl = harness.auth
            curl[.userAgent] = "curl/8.5.0"
            var cli = harness.auth
            cli[.userAgent] = AdminClient.userAgent
            try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: curl, body: AdminHarness.json("{\"blue\": 2, \"green\": 4}")) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: cli, body: AdminHarness.json("{\"blue\": 1, \"green\": 0}")) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: cli) { #expect($0.status == .created) }
            let alert = { (label: String) in
                AdminHarness.json("{\"alerts\": [{\"status\": \"firing\", \"labels\": {\"alertname\": \"Burn\", \"\(label)\": \"shop\"}}]}")
            }
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: alert("teal_route")) {
                let results = try JSONDecoder().decode([AlertResult].self, from: Data(buffer: $0.body))
                #expect(results.isEmpty, "the default label is not the configured one: \(results)")
            }
            #expect(harness.router.releases.state(route: "shop")?.name == "shifting")
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: alert("service")) {
                #expect($0.text.contains("rolled-back"))
            }
            try await client.execute(uri: "/v1/events?route=shop", method: .get, headers: harness.auth) { response in
                let events = try JSONDecoder.iso8601.decode([EventView].self, from: Data(buffer: response.body))
                let sources = events.map { "\($0.source): \($0.text)" }
                #expect(sources.contains("api: split set to 2/4 by api (curl/8.5.0) (was 1/0)"), "\(sources)")
                #expect(sources.contains("cli: split set to 1/0 by cli (was 2/4)"), "\(sources)")
                #expect(sources.contains { $0.hasPrefix("cli: release of 1.1 started") }, "\(sources)")
                #expect(sources.contains("alert: rolled back: alert Burn fired"), "\(sources)")
            }
        }
        await harness.router.shutdown()
    }

    @Test("without a token the admin API refuses a non-loopback address, and says why")
    func nonLoopbackRefusal() {
        #expect(throws: AdminError.self) { try AdminConfiguration(host: "0.0.0.0", port: 9901).validate() }
        do {
            try AdminConfiguration(host: "0.0.0.0").validate()
        } catch {
            #expect(error.message.contains("without a token"))
        }
        #expect(throws: Never.self) { try AdminConfiguration(host: "0.0.0.0", token: "t").validate() }
        #expect(throws: Never.self) { try AdminConfiguration(host: "127.0.0.1").validate() }
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
