import Foundation
import Testing
import TealTestSupport

@Suite("HTTPS listener of teal serve", .serialized)
struct TLSTests {
    /// Runs `body` with a router serving HTTPS on `tlsPort` with the default, shop and api
    /// certificates.
    static func withTLSRouter(_ body: (ServedRouter, TestCertificates, Int) async throws -> Void) async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        try await ServedRouter.with(tlsArguments: certificates.arguments(["default", "shop", "api"])) { router in
            try await body(router, certificates, try #require(router.tlsPort))
        }
    }

    /// curl over HTTPS to `name` (resolved to loopback), trusting the test CA (`verify`), or not.
    static func https(_ name: String, port: Int, certificates: TestCertificates, verify: Bool = true,
                      extra: [String] = []) async throws -> (status: Int32, output: String, error: String) {
        try await curl(["-sS", "-v", "--resolve", "\(name):\(port):127.0.0.1", "https://\(name):\(port)/"]
                       + (verify ? ["--cacert", certificates.path("ca.pem")] : ["-k"]) + extra)
    }

    @Test("TLS 1.0 and 1.1 and CBC cipher suites are refused in the handshake")
    func oldProtocolsRefused() async throws {
        try await Self.withTLSRouter { _, _, port in
            // openssl's client at security level 0 offers what Debian's default settings hide.
            func handshake(_ options: [String]) async throws -> String {
                // Standard input at its end, so s_client leaves after the handshake.
                try await TealProcess.runCommand(["/bin/sh", "-c", "exec openssl s_client \"$@\" </dev/null", "s_client",
                                                  "-connect", "127.0.0.1:\(port)", "-servername", "shop.test",
                                                  "-cipher", "DEFAULT:@SECLEVEL=0"] + options, timeout: .seconds(10)).output
            }
            for version in ["-tls1", "-tls1_1"] {
                let old = try await handshake([version])
                #expect(old.contains("alert protocol version") && old.contains("Cipher is (NONE)"), "\(version): \(old)")
            }
            let cbc = try await handshake(["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"])
            #expect(cbc.contains("handshake failure") && cbc.contains("Cipher is (NONE)"), "\(cbc)")
            let modern = try await handshake(["-tls1_2"])
            #expect(modern.contains("Cipher is ECDHE-ECDSA-AES") || modern.contains("Cipher is ECDHE-ECDSA-CHACHA20"), "\(modern)")
        }
    }

    @Test("HTTPS end to end: SNI picks the certificate (exact, wildcard, default), TLS 1.2 and 1.3, X-Forwarded-Proto https")
    func sniAndForwarding() async throws {
        try await Self.withTLSRouter { router, certificates, port in
            let shop = try await Self.https("shop.test", port: port, certificates: certificates, extra: ["-H", "X-Echo: headers"])
            #expect(shop.status == 0, "\(shop.error)")
            #expect(shop.error.contains("subject: CN=shop.test") && shop.error.contains("TLSv1.3"), "\(shop.error)")
            #expect(shop.output.contains("X-Forwarded-Proto: https"), "\(shop.output)")

            let api = try await Self.https("v2.api.test", port: port, certificates: certificates)
            #expect(api.status == 0 && api.output == "blue\n" && api.error.contains("subject: CN=*.api.test"), "\(api.error)")

            let other = try await Self.https("other.test", port: port, certificates: certificates, verify: false)
            #expect(other.status == 0 && other.error.contains("subject: CN=default.test"), "\(other.error)")

            let tls12 = try await Self.https("shop.test", port: port, certificates: certificates, extra: ["--tls-max", "1.2"])
            #expect(tls12.status == 0 && tls12.error.contains("TLSv1.2") && tls12.output == "blue\n", "\(tls12.error)")

            // The plain listener still answers, with X-Forwarded-Proto http.
            let plain = try await curl(["-sS", "-H", "X-Echo: headers", "http://127.0.0.1:\(router.proxyPort)/"])
            #expect(plain.output.contains("X-Forwarded-Proto: http\n"), "\(plain.output)")

            // HTTP/1.1 over TLS: the client's address is forwarded, and deadlines hold (a slow instance
            // gets 504 after the route's response timeout, over HTTP/1.1 and HTTP/2 alike).
            let h1 = try await Self.https("shop.test", port: port, certificates: certificates, extra: ["--http1.1", "-H", "X-Echo: headers"])
            #expect(h1.output.contains("X-Forwarded-For: 127.0.0.1\n"), "\(h1.output)")
            try router.writeRoutes(blue: ["slow"], extra: "upstream: {responseTimeout: 300ms, maxTries: 1}\n")
            router.server.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            for version in ["--http1.1", "--http2"] {
                let started = ContinuousClock.now
                let slow = try await Self.https("shop.test", port: port, certificates: certificates, extra: [version, "-o", "/dev/null", "-w", "%{http_code}"])
                // 504 itself shows the 300 ms timeout fired before the instance's answer (1.5 s);
                // the time bound, which includes starting curl and the handshake, only catches a
                // hang: a tight one failed when the machine was loaded.
                #expect(slow.output == "504" && ContinuousClock.now - started < .seconds(5), "\(version): \(slow.output) \(slow.error)")
            }

        }
    }

    @Test("bad certificate configurations stop start-up naming the file and the problem")
    func badCertificates() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "route: shop\nblue: {instances: [\"127.0.0.1:9\"]}\n".write(to: directory.appendingPathComponent("shop.yaml"), atomically: true, encoding: .utf8)
        try "not a certificate\n".write(to: directory.appendingPathComponent("garbage.pem"), atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--cert", certificates.path("missing.pem"), "--key", certificates.path("shop.key")], "TLS certificate \(certificates.path("missing.pem")): no such file"),
            (["--cert", certificates.path("shop.pem"), "--key", certificates.path("default.key")], "TLS certificate \(certificates.path("default.key")): is not the private key of \(certificates.path("shop.pem"))"),
            (["--cert", certificates.path("expired.pem"), "--key", certificates.path("expired.key")], "TLS certificate \(certificates.path("expired.pem")): expired on 2020-02-01"),
            (["--cert", directory.appendingPathComponent("garbage.pem").path, "--key", certificates.path("shop.key")], "not a PEM certificate chain"),
            (["--cert", certificates.path("shop.pem")], "give one --key for each --cert"),
        ]
        for (arguments, message) in cases {
            let result = try await TealProcess.run(["serve", "--routes", directory.path, "--listen", "127.0.0.1:\(try freePort())",
                                                    "--tls-listen", "127.0.0.1:\(try freePort())", "--admin", "127.0.0.1:\(try freePort())",
                                                    "--state", directory.appendingPathComponent("state.sqlite").path] + arguments)
            #expect(result.status != 0 && result.output.contains(message), "\(arguments): \(result.output)")
        }
    }

    @Test("certificates reload on SIGHUP under HTTPS load with no failed request; a bad certificate on reload keeps the running ones")
    func reloadUnderLoad() async throws {
        try await Self.withTLSRouter { router, certificates, port in
            let before = try await Self.https("shop.test", port: port, certificates: certificates)
            let oldSerial = Self.serial(before.error)
            // New handshakes, one after another, while the certificate is replaced and reloaded.
            let load = Task {
                var failures: [String] = []
                var count = 0
                let deadline = ContinuousClock.now + .seconds(3)
                while ContinuousClock.now < deadline {
                    let answer = try await Self.https("shop.test", port: port, certificates: certificates)
                    count += 1
                    if answer.status != 0 || answer.output != "blue\n" { failures.append(answer.error) }
                }
                return (count, failures)
            }
            try await Task.sleep(for: .milliseconds(800))
            try certificates.reissue("shop", commonName: "shop.test", san: "DNS:shop.test")
            router.server.send(SIGHUP)
            let (count, failures) = try await load.value
            #expect(failures.isEmpty && count > 10, "\(count) handshakes, failed: \(failures)")
            let after = try await Self.https("shop.test", port: port, certificates: certificates)
            #expect(after.status == 0 && Self.serial(after.error) != oldSerial, "the new certificate is served: \(after.error)")

            // A broken certificate file: the reload is refused, the running certificate stays.
            try "broken\n".write(toFile: certificates.path("shop.pem"), atomically: true, encoding: .utf8)
            router.server.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            let still = try await Self.https("shop.test", port: port, certificates: certificates)
            #expect(still.status == 0 && Self.serial(still.error) == Self.serial(after.error), "\(still.error)")
            #expect(router.server.log.contains("reload refused") && router.server.log.contains("not a PEM certificate chain"), "\(router.server.log)")
        }
    }

    /// The serial number curl -v printed for the server certificate (curl 7.88 prints the
    /// subject, dates and issuer; the start date differs per issue, so it stands in).
    static func serial(_ verbose: String) -> String? {
        verbose.split(separator: "\n").first { $0.contains("start date:") }.map(String.init)
    }

    @Test("HTTPS to the instances: verified against the pool's CA for its server name; a name the certificate lacks gets 502")
    func upstreamTLS() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let backendPort = try freePort(), proxyPort = try freePort(), adminPort = try freePort()
        let backend = try TealProcess(["demo-backend", "--listen", "127.0.0.1:\(backendPort)", "--name", "secure",
                                       "--cert", certificates.path("shop.pem"), "--key", certificates.path("shop.key")])
        defer { backend.send(SIGTERM) }
        try await backend.waitUntilListening(port: backendPort)
        let routes = certificates.directory.appendingPathComponent("routes")
        try FileManager.default.createDirectory(at: routes, withIntermediateDirectories: true)
        func writeRoute(serverName: String) throws {
            try """
                route: secure
                blue:
                  instances: ["127.0.0.1:\(backendPort)"]
                  tls: {ca: "\(certificates.path("ca.pem"))", serverName: \(serverName)}
                health: {enabled: false}
                upstream: {maxTries: 1}
                """.write(to: routes.appendingPathComponent("secure.yaml"), atomically: true, encoding: .utf8)
        }
        try writeRoute(serverName: "shop.test")
        let server = try TealProcess(["serve", "--routes", routes.path, "--listen", "127.0.0.1:\(proxyPort)",
                                      "--admin", "127.0.0.1:\(adminPort)", "--state", certificates.path("state.sqlite")])
        defer { server.send(SIGTERM) }
        try await server.waitUntilServing(port: adminPort)
        let good = try await curl(["-sS", "http://127.0.0.1:\(proxyPort)/"])
        #expect(good.output == "secure\n", "\(good.output) \(good.error)\n\(server.log)")

        try writeRoute(serverName: "wrong.test")
        server.send(SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        let bad = try await curl(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(proxyPort)/"])
        #expect(bad.output == "502", "certificate for shop.test, not wrong.test: \(bad.output)\n\(server.log)")
        server.send(SIGTERM)
        _ = await server.waitForExit(timeout: .seconds(10))
        backend.send(SIGTERM)
        _ = await backend.waitForExit(timeout: .seconds(5))
    }
}
