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
}
