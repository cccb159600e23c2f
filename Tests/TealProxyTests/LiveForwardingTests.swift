import Foundation
import Testing
import TealCore
@testable import TealProxy
import TealServer

extension LiveTests {
    @Suite("Live forwarding", .serialized)
    struct Forwarding {
        @Test("methods and request bodies reach the instance unchanged", arguments: ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
        func methodsAndBodies(method: String) async throws {
            let fixture = try await LiveFixture.start()
            let body = "name=teal&colour=between+blue+and+green"
            let connection = try fixture.connect()
            try connection.send("\(method) /submit?x=1 HTTP/1.1\r\nHost: test.local\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.text == "blue-1\n")
            #expect(response.header("X-Request-Method") == method)
            #expect(response.header("X-Body-Bytes") == String(body.utf8.count))
            #expect(response.header("X-Body-Checksum") == fnv1a(Array(body.utf8)))
            await fixture.stop()
        }

        @Test("a chunked upload arrives whole, with its checksum")
        func chunkedUpload() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect()
            try connection.send("POST /upload HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n")
            try connection.send("5\r\nhello\r\n")
            try connection.send("7;ext=1\r\n, teal!\r\n0\r\nX-Trailer: yes\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.header("X-Body-Bytes") == "12")
            #expect(response.header("X-Body-Checksum") == fnv1a(Array("hello, teal!".utf8)))
            await fixture.stop()
        }

        @Test("HEAD gets the head only and the connection stays usable")
        func headRequest() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect()
            try connection.send("HEAD / HTTP/1.1\r\nHost: test.local\r\n\r\n")
            let head = try connection.readResponse(requestWasHead: true)
            #expect(head.status == 200)
            #expect(head.header("Content-Length") == "7")
            try connection.send("GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
            #expect(try connection.readResponse().text == "blue-1\n")
            await fixture.stop()
        }

        @Test("headers: hop-by-hop removed, X-Forwarded-*, Via and X-Request-Id added, Host kept")
        func headerRewriting() async throws {
            let fixture = try await LiveFixture.start()
            let response = try fixture.get("/", headers: """
                X-Echo: headers\r
                Connection: keep-alive, X-Secret\r
                X-Secret: drop me\r
                Keep-Alive: timeout=5\r
                TE: trailers\r
                Proxy-Connection: keep-alive\r
                X-Forwarded-For: 10.1.2.3\r
                X-Forwarded-Proto: https\r
                Via: 1.0 edge\r
                X-Custom: kept\r

                """)
            let seen = response.text
            #expect(response.status == 200)
            #expect(seen.contains("Host: test.local\n"))
            #expect(seen.contains("X-Custom: kept\n"))
            #expect(seen.contains("X-Forwarded-For: 10.1.2.3, 127.0.0.1\n"))
            #expect(seen.contains("X-Forwarded-Proto: http\n"))
            #expect(seen.contains("X-Forwarded-Host: test.local\n"))
            #expect(seen.contains("Via: 1.0 edge, 1.1 teal\n"))
            #expect(seen.contains("X-Request-Id: "))
            for removed in ["X-Secret", "Keep-Alive", "TE:", "Proxy-Connection", "Connection:", "https"] {
                #expect(!seen.contains(removed), "\(removed) should not reach the instance")
            }
            let kept = try fixture.get("/", headers: "X-Echo: headers\r\nX-Request-Id: abc-123\r\n")
            #expect(kept.text.contains("X-Request-Id: abc-123\n"))
            #expect(kept.text.components(separatedBy: "X-Request-Id").count == 2)
            let first = seen.components(separatedBy: "X-Request-Id: ")[1].prefix { $0 != "\n" }
            let second = try fixture.get("/", headers: "X-Echo: headers\r\n").text.components(separatedBy: "X-Request-Id: ")[1].prefix { $0 != "\n" }
            #expect(first != second, "generated request ids are unique")
            await fixture.stop()
        }

        @Test("an instance named by host name is resolved off the event loop and reached")
        func hostNameInstance() async throws {
            let fixture = try await LiveFixture.start(edit: { route in
                route.blue.instances = route.blue.instances.map { InstanceAddress(host: "localhost", port: $0.port) }
            })
            let response = try fixture.get()
            #expect(response.status == 200)
            #expect(response.text == "blue-1\n")
            await fixture.stop()
        }

        @Test("pipelined requests are answered in order")
        func pipelining() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1", "blue-2"])
            let connection = try fixture.connect()
            let requests = (1...5).map { "GET /p\($0) HTTP/1.1\r\nHost: test.local\r\nX-Echo: headers\r\nX-Request-Id: req-\($0)\r\n\r\n" }
            try connection.send(requests.joined())
            for index in 1...5 {
                let response = try connection.readResponse()
                #expect(response.status == 200)
                #expect(response.text.contains("X-Request-Id: req-\(index)\n"))
            }
            await fixture.stop()
        }

        @Test("HTTP/1.0 clients get an answer and the connection is closed")
        func http10() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.0\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.text == "blue-1\n")
            #expect(connection.closesConnection())
            await fixture.stop()
        }

        @Test("Expect: 100-continue passes the interim answer through")
        func expectContinue() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect()
            try connection.send("POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            let interim = try connection.readResponse()
            #expect(interim.status == 100)
            try connection.send("data")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.header("X-Body-Bytes") == "4")
            await fixture.stop()
        }

        @Test("upstream keep-alive: many requests reuse a few upstream connections")
        func upstreamKeepAlive() async throws {
            let fixture = try await LiveFixture.start()
            let before = fixture.blue[0].acceptedConnections
            for _ in 0..<5 {
                let connection = try fixture.connect()
                for _ in 0..<40 {
                    try connection.send("GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
                    #expect(try connection.readResponse().status == 200)
                }
            }
            let opened = fixture.blue[0].acceptedConnections - before
            let counts = await fixture.router.proxy.upstreamConnectionCounts()
            // 200 requests over 5 sequential client connections; each event loop keeps its own pool.
            #expect(opened >= 1 && opened <= 2, "upstream connections opened: \(opened)")
            #expect(counts.opened == opened)
            await fixture.stop()
        }

        @Test("WebSocket: the upgrade passes and frames echo through the proxy")
        func webSocketEcho() async throws {
            let fixture = try await LiveFixture.start()
            let connection = try fixture.connect()
            try connection.send("""
                GET /ws HTTP/1.1\r
                Host: test.local\r
                Upgrade: websocket\r
                Connection: Upgrade\r
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
                Sec-WebSocket-Version: 13\r
                \r

                """)
            let switching = try connection.readResponse()
            #expect(switching.status == 101)
            #expect(switching.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            #expect(switching.header("Upgrade")?.lowercased() == "websocket")
            for message in ["hello", "teal between blue and green"] {
                let payload = Array(message.utf8)
                let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
                var frame: [UInt8] = [0x81, 0x80 | UInt8(payload.count)] + mask
                frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
                try connection.send(frame)
                let echoed = try connection.readBytes(2 + payload.count)
                #expect(echoed[0] == 0x81)
                #expect(Int(echoed[1]) == payload.count)
                #expect(Array(echoed[2...]) == payload)
            }
            await fixture.stop()
        }
    }
}

/// FNV-1a 64 in hex, as the demo backend reports request bodies.
func fnv1a(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return String(hash, radix: 16)
}
