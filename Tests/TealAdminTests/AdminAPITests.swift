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

    @Test("a known path asked with another method is 405 with Allow; unknown paths are 404; both JSON, with or without a token")
    func methodNotAllowed() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let cases: [(String, HTTPRequest.Method, String)] = [
                ("/v1/routes", .delete, "GET, HEAD"), ("/v1/routes", .post, "GET, HEAD"),
                ("/v1/routes/shop", .put, "GET, HEAD"), ("/v1/routes/shop/split", .get, "PUT"),
                ("/v1/routes/shop/split", .head, "PUT"), ("/v1/routes/shop/rollout", .delete, "GET, HEAD, POST"),
                ("/v1/routes/shop/rollout/abort", .get, "POST"), ("/v1/events", .patch, "GET, HEAD"),
                ("/v1/reload", .get, "POST"), ("/v1/alerts", .put, "POST"), ("/healthz", .post, "GET, HEAD"),
                ("/metrics", .trace, "GET, HEAD"), ("/v1/openapi.yaml", .options, "GET, HEAD"),
            ]
            for (uri, method, allow) in cases {
                for headers in [harness.auth, [:]] {
                    try await client.execute(uri: uri, method: method, headers: headers) { response in
                        #expect(response.status == .methodNotAllowed, "\(method) \(uri)")
                        #expect(response.headers[.allow] == allow, "\(method) \(uri)")
                        if method != .head {
                            #expect(response.text.contains("does not answer \(method.rawValue); it answers \(allow)"), "\(response.text)")
                        }
                    }
                }
            }
            for uri in ["/v1/secret", "/v1/routes/shop/split/more", "/", "/v2/routes"] {
                try await client.execute(uri: uri, method: .get, headers: harness.auth) { response in
                    #expect(response.status == .notFound, "\(uri)")
                    #expect(response.headers[.allow] == nil && response.text.contains("\"error\" : \"no endpoint \(uri)"), "\(response.text)")
                }
            }
        }
    }

    @Test("HEAD answers wherever GET does, with GET's status and header fields and no body, errors included")
    func head() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let cases: [(String, HTTPFields)] = [
                ("/healthz", [:]), ("/metrics", [:]), ("/v1/openapi.yaml", harness.auth), ("/v1/routes", harness.auth),
                ("/v1/routes/shop", harness.auth), ("/v1/routes/nope", harness.auth), ("/v1/routes/shop/rollout", harness.auth),
                ("/v1/events", harness.auth), ("/v1/events?since=never", harness.auth), ("/v1/routes", [:]), ("/v1/nothing", harness.auth),
            ]
            for (uri, headers) in cases {
                let get = try await client.execute(uri: uri, method: .get, headers: headers)
                let head = try await client.execute(uri: uri, method: .head, headers: headers)
                #expect(head.status == get.status, "\(uri)")
                #expect(head.body.readableBytes == 0, "\(uri)")
                #expect(get.body.readableBytes > 0, "\(uri)")
                var getFields = get.headers, headFields = head.headers
                getFields[.date] = nil
                headFields[.date] = nil
                // Metrics count requests, so the length of /metrics may differ between the two.
                if uri == "/metrics" { getFields[.contentLength] = nil; headFields[.contentLength] = nil }
                #expect(headFields == getFields, "\(uri)")
            }
        }
    }

    @Test("the Bearer scheme is matched in any case (RFC 9110 §11.1); other schemes and no space are refused")
    func bearerSchemeCase() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            for value in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR s3cret", "Bearer   s3cret"] {
                try await client.execute(uri: "/v1/routes", method: .get, headers: [.authorization: value]) {
                    #expect($0.status == .ok, "\(value)")
                }
            }
            for value in ["Bearers3cret", "Basic s3cret", "Bearer", "Bearer ", "Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET", "Token s3cret"] {
                try await client.execute(uri: "/v1/routes", method: .get, headers: [.authorization: value]) {
                    #expect($0.status == .unauthorized, "\(value)")
                }
            }
        }
    }

    @Test("a body over 1 MiB is 413 with a JSON error naming the limit, and changes nothing")
    func bodyTooLarge() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let padding = String(repeating: " ", count: AdminServer.maxBodyBytes)
            for (uri, method) in [("/v1/routes/shop/split", HTTPRequest.Method.put), ("/v1/routes/shop/rollout", .post), ("/v1/alerts", .post)] {
                let body = ByteBuffer(string: #"{"blue": 2, "green": 4}"# + padding)
                try await client.execute(uri: uri, method: method, headers: harness.auth, body: body) { response in
                    #expect(response.status == .contentTooLarge, "\(uri)")
                    #expect(response.headers[.contentType] == "application/json")
                    let error = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))
                    #expect(error["error"]?.contains("larger than the limit of 1 MiB (1048576 bytes)") == true, "\(error)")
                }
            }
            #expect(harness.router.controller.routes[0].split == .allBlue)
            #expect(harness.router.releases.state(route: "shop") == nil)
            // Exactly at the limit is read (and then refused as a split out of range).
            let atLimit = #"{"blue": 2000, "green": 4}"#
            let body = ByteBuffer(string: atLimit + String(repeating: " ", count: AdminServer.maxBodyBytes - atLimit.utf8.count))
            try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: harness.auth, body: body) {
                #expect($0.status == .badRequest)
                #expect($0.text.contains("split 2000/4 is not valid"))
            }
        }
    }

    @Test("errors about the whole body say 'the body', never an empty field name")
    func wholeBodyErrors() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let cases: [(String, String, String)] = [
                ("/v1/routes/shop/split", "[1, 2]", "the body must be a JSON object"),
                ("/v1/routes/shop/split", "\"2/4\"", "the body must be a JSON object"),
                ("/v1/routes/shop/split", "42", "the body must be a JSON object"),
                ("/v1/routes/shop/split", "true", "the body must be a JSON object"),
                ("/v1/routes/shop/split", "null", "the body must be a JSON object, found null"),
                ("/v1/routes/shop/split", "", "the body is not valid JSON"),
                ("/v1/routes/shop/split", "{\"blue\": null, \"green\": 1}", "field blue must be a number, found null"),
                ("/v1/routes/shop/split", "{\"blue\": 1.5, \"green\": 1}", "a number in the body does not fit its field: an integer field takes a whole number of at most 64 bits"),
                ("/v1/routes/shop/split", "{\"blue\": 99999999999999999999, \"green\": 1}", "a number in the body does not fit its field: an integer field takes a whole number of at most 64 bits"),
                ("/v1/routes/shop/split", "{\"blue\": 1, \"green\": 1", "the body is not valid JSON"),
                ("/v1/routes/shop/rollout", "{\"minRequests\": 0.5}", "a number in the body does not fit its field: an integer field takes a whole number of at most 64 bits"),
                ("/v1/routes/shop/rollout", "[]", "the body must be a JSON object"),
                ("/v1/routes/shop/rollout", "{\"green\": []}", "field green must be an object"),
                ("/v1/routes/shop/rollout", "{\"green\": {}}", "missing field green.instances"),
                ("/v1/alerts", "\"alerts\"", "the body must be a JSON object"),
                ("/v1/alerts", "{\"alerts\": [1]}", "field alerts[0] must be an object"),
                ("/v1/alerts", "{\"alerts\": [{\"status\": \"firing\", \"labels\": {\"\": 1}}]}", "field alerts[0].labels[\"\"] must be a string"),
            ]
            for (uri, body, message) in cases {
                let method: HTTPRequest.Method = uri.hasSuffix("split") ? .put : .post
                try await client.execute(uri: uri, method: method, headers: harness.auth, body: AdminHarness.json(body)) { response in
                    #expect(response.status == .badRequest, "\(body)")
                    let error = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))["error"] ?? ""
                    #expect(error == message, "\(uri) \(body)")
                    #expect(!error.contains("field  ") && !error.hasPrefix("field must"), "\(error)")
                }
            }
        }
    }

    @Test("alert names and route label values are capped at 256 characters; a longer one is 400 naming the field, and nothing is done")
    func alertLabelCaps() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth) { #expect($0.status == .created) }
            let long = String(repeating: "n", count: InputLimits.alertNameLength + 1)
            let atCap = String(repeating: "é", count: InputLimits.alertNameLength)  // 2 UTF-8 bytes each: characters count
            let cases: [(String, String)] = [
                (#"{"status": "firing", "labels": {"alertname": "\#(long)", "teal_route": "shop"}}"#, "field alerts[1].labels.alertname is longer than 256 characters"),
                (#"{"status": "resolved", "labels": {"alertname": "Burn", "teal_route": "\#(long)"}}"#, "field alerts[1].labels.teal_route is longer than 256 characters"),
            ]
            for (alert, message) in cases {
                let body = #"{"alerts": [{"status": "firing", "labels": {"alertname": "Burn", "teal_route": "shop"}}, \#(alert)]}"#
                try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: AdminHarness.json(body)) {
                    #expect($0.status == .badRequest)
                    #expect($0.text.contains(message), "\($0.text)")
                }
            }
            #expect(harness.router.releases.state(route: "shop")?.name == "shifting")
            let body = #"{"alerts": [{"status": "firing", "labels": {"alertname": "\#(atCap)", "teal_route": "shop"}}]}"#
            try await client.execute(uri: "/v1/alerts", method: .post, headers: harness.auth, body: AdminHarness.json(body)) { response in
                #expect(response.status == .ok)
                let results = try JSONDecoder().decode([AlertResult].self, from: Data(buffer: response.body))
                #expect(results == [AlertResult(route: "shop", alert: atCap, result: "rolled-back")])
            }
        }
    }

    @Test("hold and maxP99 are durations as the document's pattern says; others are 400 naming the field, and no release starts")
    func releaseDurations() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            for body in [#"{"hold": "12345678s"}"#, #"{"hold": "1000h"}"#, #"{"maxP99": "1.5"}"#, #"{"hold": "99999999999h"}"#, #"{"maxP99": "1.1234567890s"}"#] {
                try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth, body: AdminHarness.json(body)) {
                    #expect($0.status == .badRequest, "\(body)")
                    #expect($0.text.contains("is not a duration, e.g. 30s"), "\(body): \($0.text)")
                }
            }
            #expect(harness.router.releases.state(route: "shop") == nil)
            try await client.execute(uri: "/v1/routes/shop/rollout", method: .post, headers: harness.auth,
                                     body: AdminHarness.json(#"{"hold": "999h", "maxP99": "0.25s"}"#)) { #expect($0.status == .created) }
        }
    }

    @Test("since takes ISO 8601 times with and without fractional seconds, and with an offset")
    func sinceFormats() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            try await client.execute(uri: "/v1/routes/shop/split", method: .put, headers: harness.auth, body: AdminHarness.json(#"{"blue": 2, "green": 4}"#)) {
                #expect($0.status == .ok)
            }
            let past = Date(timeIntervalSinceNow: -3600), future = Date(timeIntervalSinceNow: 3600)
            let plain = ISO8601DateFormatter()
            let fractional = ISO8601DateFormatter()
            fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let offset = ISO8601DateFormatter()
            offset.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            offset.timeZone = TimeZone(secondsFromGMT: -(5 * 3600 + 30 * 60))
            for formatter in [plain, fractional, offset] {
                for (date, expectEvents) in [(past, true), (future, false)] {
                    let text = formatter.string(from: date)
                    let query = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                    try await client.execute(uri: "/v1/events?route=shop&since=\(query)", method: .get, headers: harness.auth) { response in
                        #expect(response.status == .ok, "\(text): \(response.text)")
                        let events = try JSONDecoder.iso8601.decode([EventView].self, from: Data(buffer: response.body))
                        #expect(events.isEmpty != expectEvents, "\(text)")
                    }
                }
            }
        }
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
