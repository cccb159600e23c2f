import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer

extension LiveTests {
    /// Version-sticky sessions (`sticky`): a client keeps its version through the steps of a
    /// release while that version has weight, and a rollback moves it.
    @Suite("Live sticky sessions", .serialized)
    struct Sticky {
        static func fixture(_ sticky: StickySessions) async throws -> LiveFixture {
            try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], split: Split(blue: 1, green: 1)!, edit: { $0.sticky = sticky })
        }

        /// The backend that answered each of `count` requests sent with `headers`, and the
        /// Set-Cookie lines of the answers.
        static func send(_ fixture: LiveFixture, count: Int, headers: String = "") throws -> (backends: Set<String>, cookies: [String]) {
            let connection = try fixture.connect()
            var backends = Set<String>(), cookies: [String] = []
            for _ in 0..<count {
                try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\(headers)\r\n")
                let response = try connection.readResponse()
                backends.insert(response.header("X-Backend") ?? "?")
                if let cookie = response.header("Set-Cookie") { cookies.append(cookie) }
            }
            return (backends, cookies)
        }

        @Test("version cookie: the first answer names its version; with the cookie every request of a step goes there; at rollback the green cookie goes to blue and is replaced")
        func versionCookie() async throws {
            let fixture = try await Self.fixture(.versionCookie("teal_version"))
            let controller = fixture.router.controller
            // Without the cookie the split places requests, and each answer sets the cookie.
            let fresh = try Self.send(fixture, count: 4)
            #expect(fresh.backends == ["blue-1", "green-1"] && fresh.cookies.count == 4, "\(fresh)")
            #expect(Set(fresh.cookies) == ["teal_version=1; Path=/; HttpOnly; SameSite=Lax", "teal_version=2; Path=/; HttpOnly; SameSite=Lax"])
            // With it, the version stays, and no new cookie is set, through the plan's steps.
            for split in [Split(blue: 1, green: 1)!, Split(blue: 1, green: 3)!, Split(blue: 1, green: 9)!] {
                try await controller.setSplit(split, route: "live")
                let onBlue = try Self.send(fixture, count: 10, headers: "Cookie: a=b; teal_version=1\r\n")
                let onGreen = try Self.send(fixture, count: 10, headers: "Cookie: teal_version=2\r\n")
                #expect(onBlue.backends == ["blue-1"] && onBlue.cookies.isEmpty, "\(split): \(onBlue)")
                #expect(onGreen.backends == ["green-1"] && onGreen.cookies.isEmpty, "\(split): \(onGreen)")
            }
            // Rollback: green has no weight; its cookie holders go to blue and get blue's cookie.
            try await controller.setSplit(Split(blue: 1, green: 0)!, route: "live")
            let moved = try Self.send(fixture, count: 3, headers: "Cookie: teal_version=2\r\n")
            #expect(moved.backends == ["blue-1"] && moved.cookies == Array(repeating: "teal_version=1; Path=/; HttpOnly; SameSite=Lax", count: 3))
            await fixture.stop()
        }

        @Test("key header: each user lands on one version every time, in the split's proportions, and on blue alone after a rollback")
        func keyHeader() async throws {
            let fixture = try await Self.fixture(.keyHeader("X-User-ID"))
            var greenUsers = 0
            for user in 0..<40 {
                let answers = try Self.send(fixture, count: 5, headers: "X-User-ID: user-\(user)\r\n")
                #expect(answers.backends.count == 1 && answers.cookies.isEmpty, "user-\(user): \(answers)")
                let expected = StickyKey.color(hash: StickyKey.hash(Array("user-\(user)".utf8)), split: Split(blue: 1, green: 1)!)
                #expect(answers.backends == [expected == .green ? "green-1" : "blue-1"])
                if answers.backends == ["green-1"] { greenUsers += 1 }
            }
            #expect((10...30).contains(greenUsers), "\(greenUsers) of 40 users on green at 1/1")
            try await fixture.router.controller.setSplit(Split(blue: 1, green: 0)!, route: "live")
            for user in 0..<10 {
                #expect(try Self.send(fixture, count: 2, headers: "X-User-ID: user-\(user)\r\n").backends == ["blue-1"])
            }
            // Without the header, the split places each request.
            try await fixture.router.controller.setSplit(Split(blue: 1, green: 1)!, route: "live")
            #expect(try Self.send(fixture, count: 4).backends == ["blue-1", "green-1"])
            await fixture.stop()
        }
    }
}
