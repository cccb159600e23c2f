import Logging
import ServiceLifecycle

/// Keeps a `DemoBackend` running until SIGINT or SIGTERM, then stops it.
public struct DemoBackendService: Service {
    public let backend: DemoBackend

    public init(backend: DemoBackend) {
        self.backend = backend
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await backend.stop()
    }

    /// Runs this service in a group that stops on SIGINT/SIGTERM.
    public func runUntilSignalled() async throws {
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: self)], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "teal.demo-backend")))
        try await group.run()
    }
}
