import Logging
import NIOCore
import ServiceLifecycle
import TealCore
import TealProxy

/// Runs active health probes against every instance of every route (each instance on its own
/// interval), feeds the results to the `RoutingController`, and ends passive ejections on time.
/// Follows route changes: a green pool registered for a release gets probes within a second, and
/// the probes of an instance that left its route stop.
public struct HealthChecker: Service {
    private let controller: RoutingController
    private let group: any EventLoopGroup

    public init(controller: RoutingController, group: any EventLoopGroup) {
        self.controller = controller
        self.group = group
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await probeAll() }
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
            var probed: Set<String> = []
            while !Task.isCancelled {
                var current: Set<String> = []
                for route in controller.routes where route.health.enabled {
                    for address in route.blue.instances + route.pool(.green).instances {
                        let key = "\(route.name) \(address)"
                        current.insert(key)
                        if !probed.contains(key) {
                            tasks.addTask { await probeLoop(route: route.name, address: address, spec: route.health) }
                        }
                    }
                }
                probed = current
                try? await Task.sleep(for: .seconds(1))
            }
            tasks.cancelAll()
        }
    }

    /// Whether `address` still belongs to `route` (its probes stop when it does not).
    private func isMember(_ address: InstanceAddress, of route: String) -> Bool {
        guard let route = controller.routes.first(where: { $0.name == route }), route.health.enabled else { return false }
        return route.blue.instances.contains(address) || route.pool(.green).instances.contains(address)
    }

    private func probeLoop(route: String, address: InstanceAddress, spec: HealthCheckSpec) async {
        while !Task.isCancelled && isMember(address, of: route) {
            let eventLoop = group.next()
            let result = (try? await HTTPProbe.send(path: spec.path, to: address, timeout: spec.timeout, on: eventLoop).get())
                ?? ProbeResult(failure: "probe failed")
            let passed = result.status.map { (200..<400).contains($0) } ?? false
            controller.recordProbe(route: route, instance: address, result: result, passed: passed)
            try? await Task.sleep(for: spec.interval)
        }
    }
}
