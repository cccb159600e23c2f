import Foundation
import Testing
import TealTestSupport

@Suite("Instances that close their connection after answering", .serialized)
struct UpstreamCloseTests {
    /// Python bytes literals of the instance's answer, by kind.
    static let answers = [
        "length": #"b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello""#,
        "chunked": #"b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n""#,
        "until-close": #"b"HTTP/1.0 200 OK\r\n\r\nhello""#,
    ]

    @Test("an answer the instance ends by closing its connection (Connection: close, or a body that runs until the close) reaches keep-alive HTTP/1.1 clients at once, and HTTP/2 clients",
          arguments: ["length", "chunked", "until-close"])
    func closingInstance(kind: String) async throws {
        let source = HTTP2Tests.instancePrelude + """
            answer = \(Self.answers[kind]!)
            for _ in range(3):
                conn = accept_one()
                head = b""
                while b"\\r\\n\\r\\n" not in head:
                    head += conn.recv(4096)
                conn.sendall(answer)
                conn.close()
            print("served 3")
            """
        let served = try await HTTP2Tests.withPythonInstance(source) { port, _ in
            try await ServedRouter.with(extraArguments: ["--h2c"], blue: ["closing"], instances: ["closing": port]) { router in
                let url = "http://127.0.0.1:\(router.proxyPort)/"
                // Two requests on one keep-alive connection, each allowed 5 s.
                let h1 = try await curl(["-sS", "--http1.1", "--max-time", "5", "-w", " %{http_code}\n", url, url])
                #expect(h1.output == "hello 200\nhello 200\n", "\(h1.output) \(h1.error)")
                let h2 = try await curl(["-sS", "--http2-prior-knowledge", "--max-time", "5", "-w", " %{http_code}", url])
                #expect(h2.output == "hello 200", "\(h2.output) \(h2.error)")
            }
        }
        #expect(served.contains("served 3"), "\(served)")
    }

    @Test("a request that fails on a freshly opened upstream connection (an invalid chunked body) leaves no connection counted busy, so drains do not wait for it")
    func failureOnFreshConnection() async throws {
        try await ServedRouter.with { router in
            let script = FileManager.default.temporaryDirectory.appendingPathComponent("teal-bad-chunk-\(UUID().uuidString).py")
            try Self.badChunk.write(to: script, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: script) }
            // No idle connection yet: the request opens one, and its body fails once it is open.
            let run = try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(router.proxyPort)], timeout: .seconds(20))
            #expect(run.output.contains("HTTP/1.1 400"), "\(run.output)")
            var busy = true
            for _ in 0..<40 where busy {
                try await Task.sleep(for: .milliseconds(50))
                busy = try await router.anyUpstreamConnectionBusy()
            }
            #expect(!busy, "an upstream connection is still counted busy")
        }
    }

    /// Sends a chunked upload whose second chunk-size line is empty, and prints the answer's
    /// first line.
    static let badChunk = HTTP2Tests.readToClose + """
        import sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        s.sendall(b"POST / HTTP/1.1\\r\\nHost: shop.test\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nhello\\r\\n\\r\\n")
        received, _ = read_to_close(s)
        print(received.split(b"\\r\\n")[0].decode())
        """
}
