import Foundation
import TealConfig
import TealCore
import Testing
import Yams

@Suite struct RouteFileLoaderTests {
    @Test func fullFileReadsIntoTheExpectedRoute() throws {
        let yaml = """
            route: shop
            match:
              host: "*.Example.com"
              pathPrefix: /api
            blue:
              version: 1.5
              instances: ["127.0.0.1:9101", "[::1]:9102"]
            green:
              version: "1.6.0"
              instances: [shop-green.internal:8080]
            split: 2/4
            rollout:
              steps:
                - 6/0
                - {split: 25%, hold: 1m}
                - {split: 2/4, gate: true}
                - 100%
              hold: 1.5s
              smoke:
                - {path: /healthz, expect: 204, method: HEAD, bodyContains: ok, timeout: 250ms}
                - path: /
              rollback: {maxErrorRate: 0.5%, minRequests: 10, maxP99: 1s}
              onNoTraffic: {rollback: 2m}
              hooks:
                step: ./check.sh "$TEAL_SPLIT"
                promoted: curl -fsS https://chat.example.com/hook
                rolledBack: |
                  ./page.sh --route "$TEAL_ROUTE"
                timeout: 15s
              autoStart: true
            preview:
              header: X-Shop-Preview
              value: "s3cr3t!~"
              cookie: shop_preview
              enabled: true
            health:
              path: /ready
              interval: 5s
              timeout: 2s
              rise: 1
              fall: 4
              ejectAfter: 3
              ejection: 30s
              maxEjection: 1h
              enabled: false
            upstream:
              connectTimeout: 500ms
              responseTimeout: 1m
              maxTries: 1
            """
        var rollout = RolloutPolicy(steps: [
            PlanStep(split: Split(blue: 6, green: 0)!),
            PlanStep(split: Split(blue: 75, green: 25)!, hold: .seconds(60)),
            PlanStep(split: Split(blue: 2, green: 4)!, manualGate: true),
            PlanStep(split: Split(blue: 0, green: 100)!),
        ])
        rollout.hold = .milliseconds(1500)
        var healthz = SmokeRequest(path: "/healthz")
        healthz.expect = 204
        healthz.method = "HEAD"
        healthz.bodyContains = "ok"
        healthz.timeout = .milliseconds(250)
        rollout.smoke = [healthz, SmokeRequest(path: "/")]
        rollout.rollback.maxErrorRate = 0.005
        rollout.rollback.minRequests = 10
        rollout.rollback.maxP99 = .seconds(1)
        rollout.onNoTraffic = .rollback(after: .seconds(120))
        rollout.hooks.step = "./check.sh \"$TEAL_SPLIT\""
        rollout.hooks.promoted = "curl -fsS https://chat.example.com/hook"
        rollout.hooks.rolledBack = "./page.sh --route \"$TEAL_ROUTE\"\n"
        rollout.hooks.timeout = .seconds(15)
        rollout.autoStart = true
        var preview = PreviewAccess()
        preview.header = "X-Shop-Preview"
        preview.value = "s3cr3t!~"
        preview.cookie = "shop_preview"

        var expected = Route(
            name: "shop",
            match: RouteMatch(host: .suffix(".example.com"), pathPrefix: "/api"),
            blue: PoolSpec(version: "1.5", instances: [address("127.0.0.1:9101"), address("[::1]:9102")]),
            green: PoolSpec(version: "1.6.0", instances: [address("shop-green.internal:8080")]),
            split: Split(blue: 2, green: 4)!,
            rollout: rollout
        )
        expected.health.path = "/ready"
        expected.health.interval = .seconds(5)
        expected.health.timeout = .seconds(2)
        expected.health.rise = 1
        expected.health.fall = 4
        expected.health.ejectAfter = 3
        expected.health.ejection = .seconds(30)
        expected.health.maxEjection = .seconds(3600)
        expected.health.enabled = false
        expected.upstream.connectTimeout = .milliseconds(500)
        expected.upstream.responseTimeout = .seconds(60)
        expected.upstream.maxTries = 1
        expected.preview = preview

        #expect(try RouteFileLoader.parseRoute(yaml: yaml, file: "routes/shop.yaml") == expected)
    }

    @Test func minimalFileUsesDefaults() throws {
        let route = try RouteFileLoader.parseRoute(yaml: minimalRoute(), file: "routes/shop.yaml")
        #expect(route == Route(name: "shop", blue: PoolSpec(instances: [address("127.0.0.1:9101")])))
        #expect(route.match == .any)
        #expect(route.split == .allBlue)
        #expect(route.green == nil && route.rollout == nil && route.preview == nil)
        #expect(route.health == HealthCheckSpec() && route.upstream == UpstreamSpec())
    }

    @Test func retryOnBlueIsOnByDefaultAndConfigurable() throws {
        #expect(try RouteFileLoader.parseRoute(yaml: minimalRoute(), file: "f.yaml").retryOnBlue == BlueRetryPolicy())
        let route = try RouteFileLoader.parseRoute(
            yaml: minimalRoute("rollout:\n  steps: [6/0, 0/6]\n  retryOnBlue: {enabled: false, on500: true, budget: 5%}\n"), file: "f.yaml")
        var expected = BlueRetryPolicy()
        expected.enabled = false
        expected.on500 = true
        expected.budget = 0.05
        #expect(route.retryOnBlue == expected)
        let error = parseErrorDescription(minimalRoute("rollout:\n  steps: [6/0, 0/6]\n  retryOnBlue: {retries: 3}\n"))
        #expect(error?.contains("routes/shop.yaml:6") == true && error?.contains("unknown key `retries` in rollout.retryOnBlue") == true,
                "\(error ?? "no error")")
        let rate = parseErrorDescription(minimalRoute("rollout:\n  steps: [6/0, 0/6]\n  retryOnBlue: {budget: 120%}\n"))
        #expect(rate?.contains("budget") == true, "\(rate ?? "no error")")
    }

    @Test func stickySessionsTakeExactlyOneForm() throws {
        #expect(try RouteFileLoader.parseRoute(yaml: minimalRoute(), file: "f.yaml").sticky == nil)
        for (text, expected) in [("{versionCookie: teal_version}", StickySessions.versionCookie("teal_version")),
                                 ("{keyHeader: X-User-ID}", .keyHeader("X-User-ID")), ("{keyCookie: session}", .keyCookie("session"))] {
            #expect(try RouteFileLoader.parseRoute(yaml: minimalRoute("sticky: \(text)\n"), file: "f.yaml").sticky == expected)
        }
        let both = parseErrorDescription(minimalRoute("sticky: {keyHeader: X-User, keyCookie: session}\n"))
        #expect(both?.contains("routes/shop.yaml:4") == true && both?.contains("exactly one") == true
                && both?.contains("keyHeader and keyCookie") == true, "\(both ?? "no error")")
        let badName = parseErrorDescription(minimalRoute("sticky: {keyHeader: \"X User\"}\n"))
        #expect(badName?.contains("sticky.keyHeader") == true, "\(badName ?? "no error")")
    }

    @Test func emptyValuesCountAsAbsent() throws {
        let route = try RouteFileLoader.parseRoute(yaml: minimalRoute("match:\ngreen:\nrollout: ~\n"), file: "f.yaml")
        #expect(route.match == .any && route.green == nil && route.rollout == nil)
        let noPreview = try RouteFileLoader.parseRoute(yaml: minimalRoute("preview:\n"), file: "f.yaml")
        #expect(noPreview.preview == nil)
        let emptyMatch = try RouteFileLoader.parseRoute(yaml: minimalRoute("match: {}\n"), file: "f.yaml")
        #expect(emptyMatch.match == .any)
    }

    @Test func greenMayHaveNoInstancesWhileItGetsNoTraffic() throws {
        let route = try RouteFileLoader.parseRoute(
            yaml: minimalRoute("green: {version: 2.0, instances: []}\nsplit: 6/0\n"), file: "f.yaml")
        #expect(route.green == PoolSpec(version: "2.0", instances: []))
        #expect(route.split == Split(blue: 6, green: 0))
        let versionOnly = try RouteFileLoader.parseRoute(yaml: minimalRoute("green: {version: \"2\"}\n"), file: "f.yaml")
        #expect(versionOnly.green == PoolSpec(version: "2", instances: []))
    }

    @Test(arguments: [
        ("5%", 0.05), ("0.5%", 0.005), ("100%", 1.0), ("0%", 0.0), ("0.05", 0.05), ("1", 1.0), ("0", 0.0),
    ])
    func maxErrorRateAcceptsPercentagesAndFractions(text: String, rate: Double) throws {
        let yaml = minimalRoute("rollout: {steps: [1/0], rollback: {maxErrorRate: \(text)}}\n")
        let route = try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml")
        #expect(route.rollout?.rollback.maxErrorRate == rate)
    }

    @Test(arguments: [("6/0", 6, 0), ("0/6", 0, 6), ("100%", 0, 100), ("25%", 75, 25), ("\"1/3\"", 1, 3)])
    func stepsAcceptSplitsAndPercentages(text: String, blue: Int, green: Int) throws {
        let yaml = minimalRoute("rollout:\n  steps: [\(text)]\n")
        let route = try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml")
        #expect(route.rollout?.steps == [PlanStep(split: Split(blue: blue, green: green)!)])
        #expect(route.rollout?.hold == .seconds(30))
    }

    @Test func releaseOptionsDefault() throws {
        let route = try RouteFileLoader.parseRoute(yaml: minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic:\n"), file: "f.yaml")
        #expect(route.rollout?.onNoTraffic == .wait)
        #expect(route.rollout?.hooks == ReleaseHooks())
        #expect(route.rollout?.hooks.timeout == .seconds(60))
        #expect(route.rollout?.autoStart == false)
    }

    @Test(arguments: [
        ("wait", NoTrafficPolicy.wait), ("ignore", .ignore), ("{rollback: 30s}", .rollback(after: .seconds(30))),
        ("\n    rollback: 1.5m", .rollback(after: .seconds(90))),
    ])
    func onNoTrafficForms(text: String, policy: NoTrafficPolicy) throws {
        let yaml = minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: \(text)\n")
        #expect(try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml").rollout?.onNoTraffic == policy)
    }

    @Test func hooksAreEachOptional() throws {
        let yaml = minimalRoute("rollout:\n  steps: [1/0]\n  hooks: {promoted: ./announce.sh}\n")
        var hooks = ReleaseHooks()
        hooks.promoted = "./announce.sh"
        #expect(try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml").rollout?.hooks == hooks)
        let empty = minimalRoute("rollout:\n  steps: [1/0]\n  hooks: {}\n")
        #expect(try RouteFileLoader.parseRoute(yaml: empty, file: "f.yaml").rollout?.hooks == ReleaseHooks())
    }

    @Test func autoStartNeedsGreenInstancesOnlyWhenOn() throws {
        let withGreen = minimalRoute("green: {instances: [\"127.0.0.1:9201\"]}\nrollout: {steps: [1/0], autoStart: true}\n")
        #expect(try RouteFileLoader.parseRoute(yaml: withGreen, file: "f.yaml").rollout?.autoStart == true)
        let off = minimalRoute("rollout: {steps: [1/0], autoStart: false}\n")
        #expect(try RouteFileLoader.parseRoute(yaml: off, file: "f.yaml").rollout?.autoStart == false)
    }

    @Test(arguments: ["true", "yes", "{}", "{enabled: true}", "\n  enabled:"])
    func previewOnWithDefaults(text: String) throws {
        let yaml = minimalRoute("green: {version: \"2\"}\npreview: \(text)\n")
        let preview = try #require(try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml").preview)
        #expect(preview == PreviewAccess())
        #expect(preview.header == "X-Teal-Pool" && preview.value == "green" && preview.cookie == nil)
    }

    @Test(arguments: ["false", "~", "{enabled: false}", "{header: X-Preview, value: s3cret, enabled: off}"])
    func previewOff(text: String) throws {
        // Off needs no green pool.
        #expect(try RouteFileLoader.parseRoute(yaml: minimalRoute("preview: \(text)\n"), file: "f.yaml").preview == nil)
    }

    @Test func previewAcceptsEveryTokenCharacter() throws {
        let yaml = minimalRoute("green: {instances: [\"127.0.0.1:9201\"]}\npreview:\n  header: \"A-z_0.9!#$%&'*+^`|~\"\n  cookie: teal-pool\n  value: \"!\\\"#a~\"\n")
        let preview = try #require(try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml").preview)
        #expect(preview.header == "A-z_0.9!#$%&'*+^`|~")
        #expect(preview.cookie == "teal-pool")
        #expect(preview.value == "!\"#a~")
    }

    @Test func routeNamesMayUseDotsDashesAndUnderscores() throws {
        let yaml = "route: Shop-2.eu_west\nblue: {instances: [\"a:1\"]}\n"
        #expect(try RouteFileLoader.parseRoute(yaml: yaml, file: "f.yaml").name == "Shop-2.eu_west")
        let longest = String(repeating: "a", count: 63)
        #expect(try RouteFileLoader.parseRoute(yaml: "route: \(longest)\nblue: {instances: [\"a:1\"]}\n", file: "f.yaml").name == longest)
    }

    @Test func demoRouteFileLoads() throws {
        let demo = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("routes/demo.yaml").path
        let routes = try RouteFileLoader.loadRoutes(at: demo)
        #expect(routes.count == 1)
        let route = try #require(routes.first)
        #expect(route.name == "demo")
        #expect(route.match == .any)
        #expect(route.blue == PoolSpec(version: "1.0.0", instances: [address("127.0.0.1:9101"), address("127.0.0.1:9102")]))
        #expect(route.green == PoolSpec(version: "1.1.0", instances: [address("127.0.0.1:9201"), address("127.0.0.1:9202")]))
        #expect(route.split == Split(blue: 6, green: 0))
        #expect(route.rollout?.steps.map(\.description) == ["6/0", "6/1", "2/4", "0/6"])
        #expect(route.rollout?.hold == .seconds(10))
        #expect(route.rollout?.smoke == [SmokeRequest(path: "/healthz")])
        #expect(route.rollout?.rollback.maxP99 == .milliseconds(800))
        #expect(route.health.interval == .seconds(1))
        #expect(route.rollout?.onNoTraffic == .wait && route.rollout?.autoStart == false)
        #expect(route.rollout?.hooks == ReleaseHooks() && route.preview == nil)
    }
}

@Suite struct RouteDirectoryTests {
    /// A fresh temporary directory, removed after `body`.
    private func withDirectory(_ files: [String: String], _ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("teal-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, text) in files {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        try body(directory)
    }

    private static func route(_ name: String, _ match: String = "") -> String {
        "route: \(name)\n\(match)blue:\n  instances: [\"127.0.0.1:9101\"]\n"
    }

    @Test func readsYAMLFilesInNameOrderAndIgnoresOthers() throws {
        try withDirectory([
            "b.yaml": Self.route("bravo", "match: {host: b.example.com}\n"),
            "a.yml": Self.route("alpha"),
            "c.yaml": Self.route("charlie", "match: {pathPrefix: /c}\n"),
            "notes.txt": "not: [yaml",
            ".#a.yaml": "editor lock file",
        ]) { directory in
            let routes = try RouteFileLoader.loadRoutes(at: directory)
            #expect(routes.map(\.name) == ["alpha", "bravo", "charlie"])
            #expect(try RouteFileLoader.loadRoutes(at: directory + "/") == routes)
            #expect(try RouteFileLoader.loadRoutes(at: directory + "/c.yaml").map(\.name) == ["charlie"])
        }
    }

    @Test func emptyDirectoryGivesNoRoutes() throws {
        try withDirectory([:]) { directory throws in
            #expect(try RouteFileLoader.loadRoutes(at: directory).isEmpty)
        }
    }

    @Test func errorsNameTheFileInTheDirectory() throws {
        try withDirectory(["a.yaml": Self.route("alpha"), "b.yaml": "route: beta\nblue:\n  instances: [\"x\"]\n"]) { directory in
            #expect(errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.loadRoutes(at: directory) }
                == "\(directory)/b.yaml:3: blue.instances[0]: \"x\" is not host:port, e.g. 127.0.0.1:9101")
        }
    }

    @Test func duplicateNamesAcrossFilesAreRejected() throws {
        try withDirectory(["a.yaml": Self.route("shop"), "b.yaml": Self.route("shop", "match: {pathPrefix: /b}\n")]) { directory in
            #expect(errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.loadRoutes(at: directory) }
                == "\(directory)/b.yaml: route `shop` is already defined in \(directory)/a.yaml; route names must be unique")
        }
    }

    @Test func missingPathIsAnError() {
        #expect(errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.loadRoutes(at: "/nonexistent/teal/routes") }
            == "/nonexistent/teal/routes: no such file or directory")
    }

    @Test("a pool may name a DNS name instead of instances; green may then carry a split before it resolves")
    func dnsPools() throws {
        let route = try RouteFileLoader.parseRoute(yaml: """
            route: app
            blue: {version: "1", dns: "app-blue.prod.svc.cluster.local:8080", resolveEvery: 2s}
            green: {dns: "app-green.prod.svc.cluster.local:8080"}
            split: 2/4
            """, file: "routes/app.yaml")
        #expect(route.blue.instances.isEmpty && route.blue.dns == DNSDiscovery(name: "app-blue.prod.svc.cluster.local", port: 8080, interval: .seconds(2)))
        #expect(route.green?.dns?.interval == .seconds(5) && route.split == Split(blue: 2, green: 4))
    }

    @Test("the route file in deploy/kubernetes/teal-routes.yaml is a valid Teal route")
    func kubernetesRouteFile() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/kubernetes/teal-routes.yaml")
        let configMap = try #require(try Yams.load(yaml: String(contentsOf: path, encoding: .utf8)) as? [String: Any])
        let data = try #require(configMap["data"] as? [String: String])
        let route = try RouteFileLoader.parseRoute(yaml: try #require(data["shop.yaml"]), file: "shop.yaml")
        #expect(route.blue.dns?.name == "app-blue.shop.svc.cluster.local" && route.green?.dns?.port == 8080)
    }
}
