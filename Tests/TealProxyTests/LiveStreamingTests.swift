import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer
import TealTestSupport

extension LiveTests {
    @Suite("Live streaming and shutdown", .serialized)
    struct Streaming {
        static let size = 1 << 30  // 1 GiB

        @Test("a 1 GiB download streams through with bounded memory")
        func largeDownload() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect(timeout: 60)
            let before = residentBytes()
            try connection.send("GET /big HTTP/1.1\r\nHost: a\r\nX-Response-Bytes: \(Self.size)\r\n\r\n")
            let received = try connection.drainResponse()
            let growth = residentBytes() - before
            #expect(received.status == 200)
            #expect(received.bodyBytes == Self.size)
            #expect(growth < 128 << 20, "memory grew by \(growth >> 20) MiB")
            await fixture.stop()
        }

        @Test("a 1 GiB upload streams through with bounded memory")
        func largeUpload() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect(timeout: 60)
            let before = residentBytes()
            try connection.send("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: \(Self.size)\r\n\r\n")
            let chunk = [UInt8](repeating: UInt8(ascii: "u"), count: 1 << 20)
            for _ in 0..<(Self.size >> 20) { try connection.send(chunk) }
            let response = try connection.readResponse()
            let growth = residentBytes() - before
            #expect(response.status == 200)
            #expect(response.header("X-Body-Bytes") == String(Self.size))
            #expect(growth < 128 << 20, "memory grew by \(growth >> 20) MiB")
            await fixture.stop()
        }

        @Test("shutdown lets an in-flight request finish, then stops accepting")
        func gracefulShutdown() async throws {
            let fixture = try await LiveFixture.start(backendOptions: { $0.latency = .milliseconds(500) })
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            try await Task.sleep(for: .milliseconds(100))
            let shutdown = Task { await fixture.router.shutdown() }
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.header("Connection") == "close")
            await shutdown.value
            #expect(throws: RawError.self) { try fixture.connect() }
            await fixture.stop()
        }
    }
}

extension RawConnection {
    /// Reads a Content-Length response, counting and discarding the body.
    func drainResponse() throws -> (status: Int, bodyBytes: Int) {
        let head = try readHeadOnly()
        var remaining = Int(head.header("Content-Length") ?? "0") ?? 0
        let total = remaining
        while remaining > 0 { remaining -= try discard(upTo: remaining) }
        return (head.status, total)
    }
}
