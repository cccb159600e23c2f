import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import HummingbirdTesting
import NIOPosix
import Testing
import TealAdmin
import TealCore
import TealProxy
import TealServer

/// One sample of a scrape, as Python's prometheus_client parser (Debian python3-prometheus-client,
/// hence /usr/bin/python3) read it.
struct ParsedSample: Decodable {
    var name: String
    var labels: [String: String]
    var value: Double
    var type: String
}

/// Runs a command with `input` on its standard input; returns its exit status and output.
func runTool(_ arguments: [String], input: Data) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stdout
    try process.run()
    stdin.fileHandleForWriting.write(input)
    try stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

@Suite("Prometheus metrics", .serialized)
struct MetricsTests {
    static let parser = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        samples = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            for sample in family.samples:
                samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value, "type": family.type})
        print(json.dumps(samples))
        """

    @Test("/metrics after live traffic and a rollback: promtool accepts it and a Prometheus parser finds the series")
    func liveScrape() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let blueBackend = DemoBackend(options: .init(name: "blue"), group: group)
        let greenBackend = DemoBackend(options: .init(name: "green", errorRate: 1), group: group)
        let bluePort = try #require(try await blueBackend.start().port)
        let greenPort = try #require(try await greenBackend.start().port)
        let blue = InstanceAddress(host: "127.0.0.1", port: bluePort)
        let green = InstanceAddress(host: "127.0.0.1", port: greenPort)
        var route = Route(name: "shop", blue: PoolSpec(version: "1.0", instances: [blue]), green: PoolSpec(version: "1.1", instances: [green]))
        route.health.enabled = false
        var configuration = ProxyConfiguration()
        configuration.listenHost = "127.0.0.1"
        configuration.listenPort = 0
        let router = TealRouter(routes: [route], configuration: configuration, group: group)
        let proxyPort = try #require(try await router.start().port)

        // 20 requests at 1/1: 10 answered 200 by blue, 10 answered 500 by green.
        try await router.controller.setSplit(Split(blue: 1, green: 1)!, route: "shop")
        let session = URLSession(configuration: .ephemeral)
        var statuses: [Int] = []
        for _ in 0..<20 {
            let (_, response) = try await session.data(from: URL(string: "http://127.0.0.1:\(proxyPort)/")!)
            statuses.append((response as? HTTPURLResponse)?.statusCode ?? 0)
        }
        #expect(statuses.filter { $0 == 200 }.count == 10 && statuses.filter { $0 == 500 }.count == 10)

        // A release rolled back by an alert.
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!)])
        policy.hold = .seconds(600)
        try await router.releases.start(ReleaseSpec(route: "shop", green: PoolSpec(version: "1.1", instances: [green]), policy: policy))
        try await router.releases.send(.alert(name: "HighErrorRate"), route: "shop")

        let app = Application(router: AdminServer.router(backend: RouterAdminBackend(router: router), token: "t"))
        let text = try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                return String(buffer: response.body)
            }
        }
        await router.shutdown()
        await blueBackend.stop()
        await greenBackend.stop()
        try await group.shutdownGracefully()

        let lint = try runTool(["promtool", "check", "metrics"], input: Data(text.utf8))
        #expect(lint.status == 0, "promtool check metrics: \(lint.output)\n\(text)")

        let parsed = try runTool(["/usr/bin/python3", "-c", Self.parser], input: Data(text.utf8))
        try #require(parsed.status == 0, "prometheus_client parser: \(parsed.output)")
        let samples = try JSONDecoder().decode([ParsedSample].self, from: Data(parsed.output.utf8))
        func value(_ name: String, _ labels: [String: String]) -> Double? {
            samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
        }
        let blueLabels = ["route": "shop", "pool": "blue", "version": "1.0", "instance": blue.description]
        let greenLabels = ["route": "shop", "pool": "green", "version": "1.1", "instance": green.description]
        #expect(value("teal_requests_total", blueLabels.merging(["code_class": "2xx"]) { $1 }) == 10)
        #expect(value("teal_requests_total", blueLabels.merging(["code_class": "5xx"]) { $1 }) == 0)
        #expect(value("teal_requests_total", greenLabels.merging(["code_class": "5xx"]) { $1 }) == 10)
        #expect(value("teal_pool_requests_total", ["route": "shop", "pool": "green"]) == 10)
        #expect(value("teal_pool_errors_total", ["route": "shop", "pool": "green", "kind": "server_error"]) == 10)
        #expect(value("teal_request_duration_seconds_count", ["route": "shop", "pool": "blue"]) == 10)
        #expect(value("teal_request_duration_seconds_bucket", ["route": "shop", "pool": "green", "le": "+Inf"]) == 10)
        #expect(value("teal_instance_healthy", blueLabels) == 1)
        #expect(value("teal_instance_ejected", greenLabels) == 0)
        #expect(value("teal_upstream_answer_overruns_total", blueLabels) == 0)
        #expect(value("teal_upstream_connections", blueLabels.merging(["state": "idle"]) { $1 }) ?? 0 >= 1)
        #expect(value("teal_split_ratio", ["route": "shop", "pool": "blue"]) == 1)
        #expect(value("teal_release_state", ["route": "shop", "state": "rolled-back"]) == 1)
        #expect(value("teal_release_state", ["route": "shop", "state": "shifting"]) == 0)
        #expect(value("teal_rollbacks_total", ["route": "shop", "reason": "alert"]) == 1)
        #expect(value("teal_client_connections", [:]) != nil)
        #expect(samples.first { $0.name == "teal_requests_total" }?.type == "counter")
        #expect(samples.first { $0.name == "teal_request_duration_seconds_bucket" }?.type == "histogram")
    }
}
