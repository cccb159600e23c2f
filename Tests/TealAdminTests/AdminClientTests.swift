import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TealAdmin
import TealCore
import TealServer

@Suite("Admin client against a live admin listener")
struct AdminClientTests {
    @Test("rollout wait: 1 for an aborted release, 0 for a promoted one, 2 for errors; server errors come back as given")
    func waitExitCodes() async throws {
        let harness = try await AdminHarness()
        let app = Application(router: AdminServer.router(backend: RouterAdminBackend(router: harness.router), token: harness.token),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let admin = try AdminClient(address: "127.0.0.1:\(port)", token: harness.token)
            let anonymous = try AdminClient(address: "http://127.0.0.1:\(port)", token: nil)

            await #expect(throws: AdminError(status: 401, message: "this endpoint needs Authorization: Bearer TOKEN")) {
                let _: [RouteView] = try await anonymous.send("GET", "/v1/routes")
            }
            let routes: [RouteView] = try await admin.send("GET", "/v1/routes")
            #expect(routes.map(\.name) == ["shop"])

            // No release yet: an error (exit 2) carrying the server's message.
            let none = await admin.waitForOutcome(route: "shop", timeout: .seconds(2))
            #expect(none.code == 2 && none.error?.code == 404)

            // Aborted: exit 1.
            let started: RolloutView = try await admin.send("POST", "/v1/routes/shop/rollout", body: RolloutRequest(hold: "10m"))
            #expect(started.state == "shifting")
            let _: RolloutView = try await admin.send("POST", "/v1/routes/shop/rollout/abort")
            #expect(await admin.waitForOutcome(route: "shop", timeout: .seconds(5)).code == 1)

            // Promoted: exit 0 (promotion by hand; the drain has nothing to wait for).
            let _: RolloutView = try await admin.send("POST", "/v1/routes/shop/rollout", body: RolloutRequest(hold: "10m"))
            let _: RolloutView = try await admin.send("POST", "/v1/routes/shop/rollout/promote")
            let promoted = await admin.waitForOutcome(route: "shop", timeout: .seconds(10))
            #expect(promoted.code == 0 && promoted.view?.state == "promoted")
        }
        await harness.router.shutdown()
        #expect(throws: AdminError.self) { try AdminClient(address: "not a url ::", token: nil) }
    }
}
