import Foundation
import Testing
import TealTestSupport

@Suite("HTTP/1.1 clients that shut their sending side", .serialized)
struct HalfCloseTests {
    @Test("requests sent before a half-close are answered, then Teal closes; a half-sent head or body just closes",
          arguments: [false, true])
    func halfClose(h2c: Bool) async throws {
        try await ServedRouter.with(extraArguments: h2c ? ["--h2c"] : []) { router in
            let script = FileManager.default.temporaryDirectory.appendingPathComponent("teal-half-close-\(UUID().uuidString).py")
            try Self.client.write(to: script, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: script) }
            let run = try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(router.proxyPort)], timeout: .seconds(30))
            #expect(run.output.contains("one=1 closed=True"), "\(run.output)")
            #expect(run.output.contains("pipelined=2 closed=True"), "\(run.output)")
            #expect(run.output.contains("upload=1 body=True closed=True"), "\(run.output)")
            #expect(run.output.contains("partial=b'' closed=True"), "\(run.output)")
            #expect(run.output.contains("cut-body=b'' closed=True quickly=True"), "\(run.output)")
        }
    }

    /// Sends each request (or part of one), shuts its sending side, and reads until Teal closes
    /// the connection (or 5 s pass); prints the answers it counted and whether Teal closed.
    static let client = HTTP2Tests.readToClose + """
        import sys, time
        port = int(sys.argv[1])
        def half_close(payload):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return read_to_close(s)
        get = b"GET / HTTP/1.1\\r\\nHost: shop.test\\r\\n\\r\\n"
        one, closed = half_close(get)
        print(f"one={one.count(b'HTTP/1.1 200')} closed={closed}")
        two, closed = half_close(get + get.replace(b"/ ", b"/b "))
        print(f"pipelined={two.count(b'HTTP/1.1 200')} closed={closed}")
        up, closed = half_close(b"POST / HTTP/1.1\\r\\nHost: shop.test\\r\\nContent-Length: 5\\r\\n\\r\\nhello")
        print(f"upload={up.count(b'HTTP/1.1 200')} body={b'x-body-bytes: 5' in up.lower()} closed={closed}")
        partial, closed = half_close(b"GET / HTTP/1.1\\r\\nHost: sh")
        print(f"partial={partial[:20]} closed={closed}")
        started = time.time()
        cut, closed = half_close(b"POST / HTTP/1.1\\r\\nHost: shop.test\\r\\nContent-Length: 10\\r\\n\\r\\nhello")
        print(f"cut-body={cut[:20]} closed={closed} quickly={time.time() - started < 3}")
        """
}
