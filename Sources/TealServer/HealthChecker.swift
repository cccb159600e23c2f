import Logging
import NIOCore
import ServiceLifecycle
import TealCore
import TealProxy

/// Runs active health probes against every instance of every route (each instance on its own
/// interval), feeds the results to the `RoutingController`, and ends passive ejections on time.
public struct HealthChecker: Service {
    private let controller: RoutingController
    private let group: any EventLoopGroup

    public init(controller: RoutingController, group: any EventLoopGroup) {
        self.controller = controller
        self.group = group
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { await probeAll() }
    }

    private func probeAll() async {
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                while !Task.isCancelled {
                    controller.tick()
                    controller.sampleRecentTraffic()
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
            for route in controller.routes where route.health.enabled {
                for address in route.blue.instances + route.pool(.green).instances {
                    tasks.addTask { await probeLoop(route: route.name, address: address, spec: route.health) }
                }
            }
            await tasks.waitForAll()
        }
    }

    private func probeLoop(route: String, address: InstanceAddress, spec: HealthCheckSpec) async {
        while !Task.isCancelled {
            let eventLoop = group.next()
            let result = (try? await HTTPProbe.send(path: spec.path, to: address, timeout: spec.timeout, on: eventLoop).get())
                ?? ProbeResult(failure: "probe failed")
            let passed = result.status.map { (200..<400).contains($0) } ?? false
            controller.recordProbe(route: route, instance: address, result: result, passed: passed)
            try? await Task.sleep(for: spec.interval)
        }
    }
}
