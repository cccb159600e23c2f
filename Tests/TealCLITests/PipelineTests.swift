import Foundation
import Testing
import TealTestSupport

@Suite("deploy/pipeline/release.sh against a live teal serve", .serialized)
struct PipelineTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/pipeline/release.sh").path

    @Test("a healthy green: exit 0, promoted; a failing green: exit 1, rolled back, the journal printed")
    func releaseStep() async throws {
        try await ServedRouter.with(plan: "[1/1, 0/1]", hold: "1s") { router in
            let environment = ["TEAL": try TealProcess.binary.path, "TEAL_ADMIN": "http://127.0.0.1:\(router.adminPort)",
                               "ROUTE": "shop", "RELEASE_TIMEOUT": "40"]
            let load = router.load(clients: 2)
            let healthy = try await TealProcess.runCommand(["/bin/bash", Self.script], environment: environment.merging(["GREEN_VERSION": "1.1"]) { $1 })
            #expect(healthy.status == 0 && healthy.output.contains("release: 1.1 promoted on shop"), "\(healthy.output)")

            let failing = try await TealProcess.runCommand(["/bin/bash", Self.script], environment: environment.merging([
                "GREEN_VERSION": "1.2", "GREEN_INSTANCES": "127.0.0.1:\(router.ports["bad"]!)"]) { $1 })
            _ = await load.stop()
            #expect(failing.status == 1, "\(failing.output)")
            #expect(failing.output.contains("was NOT promoted") && failing.output.contains("rolled back: green error rate"), "\(failing.output)")
            #expect(failing.output.contains("cli        release of 1.2 started"), "the journal, with who asked: \(failing.output)")

            let unknown = try await TealProcess.runCommand(["/bin/bash", Self.script], environment: environment.merging([
                "ROUTE": "nope", "GREEN_VERSION": "9"]) { $1 })
            #expect(unknown.status == 2 && unknown.output.contains("no route named nope"), "\(unknown.output)")
        }
    }
}
