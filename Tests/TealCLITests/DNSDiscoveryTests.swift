import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOPosix
import Synchronization
import Testing
import TealCore
import TealProxy
import TealServer
import TealTestSupport

/// A resolver whose answers the test sets: a list of addresses, or a failure.
final class ScriptedResolver: InstanceResolver {
    let answer = Mutex<Result<[InstanceAddress], SystemResolver.Failure>>(.success([]))
    let asked = Atomic<Int>(0)

    func resolve(name: String, port: Int) async throws -> [InstanceAddress] {
        asked.wrappingAdd(1, ordering: .relaxed)
        return try answer.withLock { $0 }.get()
    }
}

@Suite("DNS discovery", .serialized)
struct DNSDiscoveryTests {
    @Test("the system resolver answers for localhost with loopback addresses")
    func systemResolver() async throws {
        let addresses = try await SystemResolver().resolve(name: "localhost", port: 8080)
        #expect(!addresses.isEmpty && addresses.allSatisfy { ["127.0.0.1", "::1"].contains($0.host) && $0.port == 8080 }, "\(addresses)")
        await #expect(throws: SystemResolver.Failure.self) { try await SystemResolver().resolve(name: "no-such-name.invalid", port: 1) }
    }

    @Test("a DNS pool follows its name: instances join at once, vanished ones stop getting requests, failures and empty answers keep the last set")
    func poolFollowsDNS() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var backends: [DemoBackend] = []
        var addresses: [InstanceAddress] = []
        for name in ["a", "b", "c"] {
            let backend = DemoBackend(options: .init(name: name), group: group)
            addresses.append(InstanceAddress(host: "127.0.0.1", port: try #require(try await backend.start().port)))
            backends.append(backend)
        }
        let resolver = ScriptedResolver()
        resolver.answer.withLock { $0 = .success([addresses[0], addresses[1]]) }
        var route = Route(name: "app", blue: PoolSpec(version: "1", instances: [], dns: DNSDiscovery(name: "app.test", port: 80, interval: .milliseconds(200))))
        route.health.enabled = false
        var configuration = ProxyConfiguration()
        configuration.listenPort = 0
        let router = TealRouter(routes: [route], configuration: configuration, group: group, resolver: resolver)
        let port = try #require(try await router.start().port)
        let session = URLSession(configuration: .ephemeral)
        func answers(_ count: Int) async throws -> [String: Int] {
            var seen: [String: Int] = [:]
            for _ in 0..<count {
                let (data, _) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)/")!)
                seen[String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), default: 0] += 1
            }
            return seen
        }
        #expect(try await answers(6) == ["a": 3, "b": 3], "resolved before the first request")

        // Scale out, then in: the pool follows.
        resolver.answer.withLock { $0 = .success(addresses) }
        await router.discovery.refresh(force: true)
        #expect(try await answers(6) == ["a": 2, "b": 2, "c": 2])
        resolver.answer.withLock { $0 = .success([addresses[2]]) }
        await router.discovery.refresh(force: true)
        #expect(try await answers(4) == ["c": 4])

        // A failing resolver and an empty answer keep the last good set.
        resolver.answer.withLock { $0 = .failure(SystemResolver.Failure(description: "SERVFAIL")) }
        await router.discovery.refresh(force: true)
        resolver.answer.withLock { $0 = .success([]) }
        await router.discovery.refresh(force: true)
        #expect(try await answers(3) == ["c": 3])
        #expect(router.controller.routes[0].blue.instances == [addresses[2]])

        // The interval drives re-resolution by itself.
        let before = resolver.asked.load(ordering: .relaxed)
        let service = Task { try await router.discovery.run() }
        // Two re-resolutions at the 200 ms interval; waited for up to 3 s, since a loaded
        // machine (the whole suite in parallel) can start the task late.
        for _ in 0..<30 where resolver.asked.load(ordering: .relaxed) - before < 2 {
            try await Task.sleep(for: .milliseconds(100))
        }
        service.cancel()
        #expect(resolver.asked.load(ordering: .relaxed) - before >= 2)

        // A reload that changes the DNS pool's settings keeps its instances; one that renames it
        // serves what the new name resolves to from the first request.
        var slower = route
        slower.blue.dns?.interval = .seconds(30)
        _ = try await router.controller.reload([slower])
        #expect(try await answers(2) == ["c": 2])
        var renamed = route
        renamed.blue.dns = DNSDiscovery(name: "other.test", port: 80)
        _ = try await router.controller.reload([renamed], resolved: ["app": [.blue: [addresses[0]]]])
        #expect(try await answers(2) == ["a": 2])

        let journal = await router.releases.events(route: "app").filter { $0.source == "dns" }.map(\.text)
        #expect(journal.contains { $0.contains("3 instances (was 2)") } && journal.contains { $0.contains("1 instances (was 3)") }, "\(journal)")
        await router.shutdown()
        for backend in backends { await backend.stop() }
        try await group.shutdownGracefully()
    }
}
