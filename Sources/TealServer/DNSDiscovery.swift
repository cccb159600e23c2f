import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TealCore
import TealProxy
#if canImport(Glibc)
import Glibc
#endif

/// Resolves a name to instance addresses (A and AAAA records, each with `port`).
public protocol InstanceResolver: Sendable {
    func resolve(name: String, port: Int) async throws -> [InstanceAddress]
}

/// The system resolver (`getaddrinfo`, so /etc/hosts and the cluster DNS both answer), run off
/// the event loops.
public struct SystemResolver: InstanceResolver {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public init() {}

    public func resolve(name: String, port: Int) async throws -> [InstanceAddress] {
        try await Task.detached {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(name, nil, &hints, &result)
            guard status == 0 else { throw Failure(description: "cannot resolve \(name): \(String(cString: gai_strerror(status)))") }
            defer { freeaddrinfo(result) }
            var addresses: Set<InstanceAddress> = []
            var entry = result
            while let info = entry?.pointee {
                var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(info.ai_addr, info.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                    addresses.insert(InstanceAddress(host: String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), port: port))
                }
                entry = info.ai_next
            }
            return addresses.sorted()
        }.value
    }
}

/// Keeps DNS pools up to date: every pool with `dns` is re-resolved on its interval; a changed
/// answer replaces the pool's instances (new ones get requests at once, vanished ones are
/// drained); a failed or empty answer keeps the last good set. Changes are logged and journaled.
public final class DNSDiscoveryService: Service, Sendable {
    private let controller: RoutingController
    private let releases: ReleaseController
    private let proxy: ProxyServer
    private let drainTimeout: Duration
    private let resolver: any InstanceResolver
    private let logger: Logger
    private let due = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(controller: RoutingController, releases: ReleaseController, proxy: ProxyServer, drainTimeout: Duration,
                resolver: any InstanceResolver = SystemResolver(), logger: Logger = Logger(label: "teal.dns")) {
        self.controller = controller
        self.releases = releases
        self.proxy = proxy
        self.drainTimeout = drainTimeout
        self.resolver = resolver
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.refresh(at: .now)
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// What the DNS pools of `routes` resolve to now (pools that fail or answer nothing are left
    /// out), for a reload to serve them from its first request.
    public func resolveNow(_ routes: [Route]) async -> [String: [PoolColor: [InstanceAddress]]] {
        var answers: [String: [PoolColor: [InstanceAddress]]] = [:]
        for (route, color, dns) in Self.dnsPools(routes) {
            guard let found = try? await resolver.resolve(name: dns.name, port: dns.port), !found.isEmpty else { continue }
            answers[route.name, default: [:]][color] = found
        }
        return answers
    }

    /// The pools of `routes` that follow a DNS name.
    private static func dnsPools(_ routes: [Route]) -> [(route: Route, color: PoolColor, dns: DNSDiscovery)] {
        routes.flatMap { route in PoolColor.allCases.compactMap { color in route.pool(color).dns.map { (route, color, $0) } } }
    }

    /// Resolves every DNS pool whose interval has passed (all of them with `force`).
    public func refresh(at now: ContinuousClock.Instant = .now, force: Bool = false) async {
        for (route, color, dns) in Self.dnsPools(controller.routes) {
            let key = "\(route.name)/\(color)"
            let isDue = due.withLock { due in
                guard force || (due[key] ?? now) <= now else { return false }
                due[key] = now + dns.interval
                return true
            }
            if isDue { await resolve(dns, route: route.name, pool: color, current: route.pool(color).instances) }
        }
    }

    private func resolve(_ dns: DNSDiscovery, route: String, pool color: PoolColor, current: [InstanceAddress]) async {
        let found: [InstanceAddress]
        do {
            found = try await resolver.resolve(name: dns.name, port: dns.port)
        } catch {
            logger.warning("DNS discovery failed; keeping the last instances", metadata: [
                "route": "\(route)", "pool": "\(color)", "name": "\(dns)", "error": "\(error)", "instances": "\(current.count)"])
            return
        }
        guard !found.isEmpty else {
            logger.warning("DNS discovery found no instances; keeping the last ones", metadata: ["route": "\(route)", "pool": "\(color)", "name": "\(dns)"])
            return
        }
        guard Set(found) != Set(current) else { return }
        do {
            let gone = try await controller.setInstances(found, route: route, pool: color)
            let added = found.filter { !current.contains($0) }, removed = current.filter { !found.contains($0) }
            let text = "\(color) pool from DNS \(dns): \(found.count) instances (was \(current.count))"
                + (added.isEmpty ? "" : "; added \(added.map(\.description).joined(separator: ", "))")
                + (removed.isEmpty ? "" : "; removed \(removed.map(\.description).joined(separator: ", "))")
            await releases.record(text, route: route, source: "dns")
            proxy.drain(gone, timeout: drainTimeout)
        } catch {
            logger.error("DNS discovery could not update the pool", metadata: ["route": "\(route)", "pool": "\(color)", "error": "\(error)"])
        }
    }
}
