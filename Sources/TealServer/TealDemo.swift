import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TealCore
import TealProxy

/// `teal demo`: starts 6 blue and 6 green demo backends in this process, the router in front of
/// them and a steady load generator, then shifts traffic step by step (6/0 → 6/1 → 2/4 → 0/6)
/// and prints, twice a second, where the requests went and how many failed.
///
/// The shift is driven by hand here (`RoutingController.setSplit`); automatic verdicts and
/// rollback arrive with the release state machine.
public struct TealDemo: Sendable {
    public struct Options: Sendable {
        public var listenPort = 8080
        public var greenErrorRate = 0.0
        public var stepSeconds = 4.0
        public var steps: [Split] = [Split(blue: 6, green: 0)!, Split(blue: 6, green: 1)!, Split(blue: 2, green: 4)!, Split(blue: 0, green: 6)!]
        public var workers = 8

        public init() {}
    }

    private let options: Options
    private let output: @Sendable (String) -> Void

    public init(options: Options, output: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.options = options
        self.output = output
    }

    /// Runs the demo to the end; returns the counts per pool.
    @discardableResult
    public func run() async throws -> (blue: Int, green: Int, errors: Int) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var backends: [DemoBackend] = []
        var blue: [InstanceAddress] = [], green: [InstanceAddress] = []
        for index in 1...12 {
            let isGreen = index > 6
            let name = isGreen ? "green-\(index - 6)" : "blue-\(index)"
            let backend = DemoBackend(options: .init(name: name, errorRate: isGreen ? options.greenErrorRate : 0), group: group)
            let address = try await backend.start()
            backends.append(backend)
            let instance = InstanceAddress(host: "127.0.0.1", port: address.port!)
            if isGreen { green.append(instance) } else { blue.append(instance) }
        }
        var route = Route(name: "demo", blue: PoolSpec(version: "1.0.0", instances: blue),
                          green: PoolSpec(version: "1.1.0", instances: green), split: options.steps[0])
        route.health.enabled = false
        var configuration = ProxyConfiguration()
        configuration.listenPort = options.listenPort
        let logger = Logger(label: "teal.demo", factory: { _ in SwiftLogNoOpLogHandler() })
        var router = TealRouter(routes: [route], configuration: configuration, group: group, logger: logger)
        let address: SocketAddress
        do {
            address = try await router.start()
        } catch {
            configuration.listenPort = 0  // the usual port is taken: use any free one
            router = TealRouter(routes: [route], configuration: configuration, group: group, logger: logger)
            address = try await router.start()
        }
        output("teal demo: router on http://127.0.0.1:\(address.port!)/ in front of 6 blue (1.0.0) and 6 green (1.1.0) instances")
        output("           try: curl -i http://127.0.0.1:\(address.port!)/   (Ctrl-C to stop)")
        let target = InstanceAddress(host: "127.0.0.1", port: address.port!)
        let counts = DemoCounts()
        let load = Task {
            await withTaskGroup(of: Void.self) { workers in
                for _ in 0..<options.workers {
                    workers.addTask {
                        while !Task.isCancelled {
                            let result = try? await HTTPProbe.send(path: "/", to: target, timeout: .seconds(2), keepBody: true,
                                                                   on: group.next()).get()
                            counts.add(result)
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                    }
                }
            }
        }
        for split in options.steps {
            try await router.controller.setSplit(split, route: "demo")
            let ticks = max(1, Int(options.stepSeconds * 2))
            for _ in 0..<ticks {
                try await Task.sleep(for: .milliseconds(500))
                output(Self.line(split: split, interval: counts.takeInterval()))
            }
        }
        load.cancel()
        await load.value
        let total = counts.total
        output("teal demo: done; green now carries all traffic. Requests: blue \(total.blue), green \(total.green), errors \(total.errors)")
        if options.greenErrorRate > 0 {
            output("teal demo: green answered with errors; automatic rollback comes with the release state machine")
        }
        await router.shutdown()
        for backend in backends { await backend.stop() }
        try await group.shutdownGracefully()
        return total
    }

    static func line(split: Split, interval: (blue: Int, green: Int, errors: Int, greenErrors: Int)) -> String {
        let width = 24
        let greenCells = Int((split.greenFraction * Double(width)).rounded())
        let bar = String(repeating: "█", count: width - greenCells) + String(repeating: "▒", count: greenCells)
        let total = interval.blue + interval.green
        let greenRate = interval.green == 0 ? 0 : Double(interval.greenErrors) / Double(interval.green) * 100
        let splitText = split.description.padding(toLength: 5, withPad: " ", startingAt: 0)
        return "split \(splitText) blue \(bar) green | \(total) req: blue \(interval.blue), green \(interval.green), "
            + "green errors \(String(format: "%.1f", greenRate))%"
    }
}

/// Counts the demo load generator's answers by pool.
private final class DemoCounts: Sendable {
    private struct Counts { var blue = 0, green = 0, errors = 0, greenErrors = 0 }
    private let state = NIOLockedValueBox((interval: Counts(), total: Counts()))

    func add(_ result: ProbeResult?) {
        let name = result?.body ?? ""
        let failed = (result?.status ?? 500) >= 500
        state.withLockedValue { state in
            for keyPath in [\(interval: Counts, total: Counts).interval, \.total] {
                if name.hasPrefix("green") { state[keyPath: keyPath].green += 1; if failed { state[keyPath: keyPath].greenErrors += 1 } }
                else if name.hasPrefix("blue") { state[keyPath: keyPath].blue += 1 }
                if failed { state[keyPath: keyPath].errors += 1 }
            }
        }
    }

    func takeInterval() -> (blue: Int, green: Int, errors: Int, greenErrors: Int) {
        state.withLockedValue { state in
            defer { state.interval = Counts() }
            return (state.interval.blue, state.interval.green, state.interval.errors, state.interval.greenErrors)
        }
    }

    var total: (blue: Int, green: Int, errors: Int) {
        state.withLockedValue { ($0.total.blue, $0.total.green, $0.total.errors) }
    }
}
