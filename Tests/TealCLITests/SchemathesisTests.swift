import Foundation
import Testing
import TealTestSupport

/// schemathesis (PyPI) against a live `teal serve`: it reads the served `/v1/openapi.yaml` and
/// sends generated requests, valid and invalid, to every operation, with every check it has
/// (status codes, content types, headers and bodies as documented, invalid input refused, valid
/// input accepted, 405 with `Allow` for other methods, the token required, no 5xx). A fixed seed
/// and a cap on examples per operation keep the run the same each time and well under two minutes.
@Suite("schemathesis against a live teal serve", .serialized)
struct SchemathesisTests {
    /// The version `scripts/test.sh` installs.
    static let version = "4.32.5"

    /// `TEAL_SCHEMATHESIS` (set by `scripts/test.sh`), else the virtualenv it makes under this
    /// package's `.build`.
    static var executable: String {
        if let path = ProcessInfo.processInfo.environment["TEAL_SCHEMATHESIS"], !path.isEmpty { return path }
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return package.appendingPathComponent(".build/test-venv/bin/schemathesis").path
    }

    /// Requests name the route `shop` most of the time (else a generated name, which is 404), so
    /// that splits, releases and their actions run for real and not only their 404s.
    static let configuration = """
        [dictionaries.routes]
        values = ["shop"]

        [parameters]
        "path.route" = { dictionary = "routes", probability = 0.7 }

        """

    @Test("every operation of the served OpenAPI document passes all of schemathesis's checks, and teal serve stays up",
          .timeLimit(.minutes(3)))
    func allChecks() async throws {
        let executable = Self.executable
        try #require(FileManager.default.isExecutableFile(atPath: executable),
                     "no schemathesis at \(executable): scripts/test.sh installs it (or set TEAL_SCHEMATHESIS)")
        let version = try await TealProcess.runCommand([executable, "--version"], timeout: .seconds(30))
        #expect(version.output.contains(Self.version), "\(version.output)")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-schemathesis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let token = "schemathesis-\(UUID().uuidString)"
        let tokenFile = directory.appendingPathComponent("token")
        try token.write(to: tokenFile, atomically: true, encoding: .utf8)
        let configuration = directory.appendingPathComponent("schemathesis.toml")
        try Self.configuration.write(to: configuration, atomically: true, encoding: .utf8)

        try await ServedRouter.with(extraArguments: ["--admin-token-file", tokenFile.path]) { router in
            let base = "http://127.0.0.1:\(router.adminPort)"
            let started = ContinuousClock.now
            // Run in the temporary directory: schemathesis and Hypothesis keep files in the current one.
            let run = try await TealProcess.runCommand(
                ["/bin/sh", "-c", #"cd "$1" && shift && exec "$@""#, "sh", directory.path,
                 executable, "--config-file", configuration.path, "--no-color", "run", "\(base)/v1/openapi.yaml", "--url", base,
                 "--header", "Authorization: Bearer \(token)", "--checks", "all", "--seed", "1", "--max-examples", "100",
                 "--generation-database", "none", "--request-timeout", "10"],
                environment: ["HOME": directory.path], timeout: .seconds(150))
            let elapsed = ContinuousClock.now - started
            #expect(run.status == 0, "schemathesis exited \(run.status) after \(elapsed):\n\(run.output)")
            // A run that tested little (the document not loaded, every request refused) must not pass.
            let generated = run.output.firstMatch(of: /(\d+) generated/).flatMap { Int($0.1) } ?? 0
            #expect(generated >= 500, "only \(generated) cases generated:\n\(run.output)")
            let selected = run.output.firstMatch(of: /Selected: (\d+)\/(\d+)/).map { (Int($0.1) ?? 0, Int($0.2) ?? 0) }
            #expect(selected.map { $0.0 == $0.1 && $0.0 >= 18 } == true, "not every operation was tested:\n\(run.output)")
            #expect(router.server.process.isRunning, "teal serve died under schemathesis:\n\(router.server.log)")
            // Still serving after it.
            let health = try await curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/healthz"])
            #expect(health.output == "200")
        }
    }
}
