import Foundation
import Synchronization
import Testing
import TealAdmin
import TealCore
import TealTestSupport

@Suite("HTTP/2 clients of teal serve", .serialized)
struct HTTP2Tests {
    /// curl with HTTP/2 over TLS to `shop.test` on the router's HTTPS port, trusting the test CA.
    static func h2(_ port: Int, _ certificates: TestCertificates, paths: [String] = ["/"], extra: [String] = []) async throws
        -> (status: Int32, output: String, error: String) {
        try await curl(["-sS", "--http2", "--cacert", certificates.path("ca.pem"), "--resolve", "shop.test:\(port):127.0.0.1"]
                       + extra + paths.map { "https://shop.test:\(port)\($0)" })
    }

    @Test("HTTP/2 over TLS (ALPN h2): the split holds per stream on one connection, bodies both ways, HEAD, forwarded headers")
    func streams() async throws {
        try await TLSTests.withTLSRouter { router, certificates, port in
            #expect(try await router.teal(["split", "shop", "1/1"]).status == 0)
            let four = try await Self.h2(port, certificates, paths: ["/a", "/b", "/c", "/d"], extra: ["-w", "%{http_version}\\n"])
            #expect(four.status == 0, "\(four.error)")
            let lines = four.output.split(separator: "\n").map(String.init)
            #expect(lines.filter { $0 == "2" }.count == 4, "every answer over HTTP/2: \(lines)")
            #expect(lines.filter { $0 != "2" }.sorted() == ["blue", "blue", "green", "green"], "four streams over one connection at 1/1: \(lines)")

            let echo = try await Self.h2(port, certificates, extra: ["-H", "X-Echo: headers"])
            #expect(echo.output.contains("X-Forwarded-Proto: https") && echo.output.contains("host: shop.test:\(port)"), "\(echo.output)")

            // An upload without content-length (streamed from stdin) reaches the instance chunked.
            let body = String(repeating: "0123456789", count: 30_000)
            let file = certificates.directory.appendingPathComponent("body.txt")
            try body.write(to: file, atomically: true, encoding: .utf8)
            let upload = try await Self.h2(port, certificates, extra: ["-X", "POST", "--data-binary", "@\(file.path)", "-D", "-", "-o", "/dev/null"])
            #expect(upload.output.contains("x-body-bytes: 300000"), "\(upload.output)")
            let streamed = try await curl(["-sS", "--http2", "--cacert", certificates.path("ca.pem"), "--resolve", "shop.test:\(port):127.0.0.1",
                                           "-T", file.path, "-H", "Content-Length:", "-H", "Transfer-Encoding:", "-D", "-", "-o", "/dev/null",
                                           "https://shop.test:\(port)/upload"])
            #expect(streamed.output.contains("x-body-bytes: 300000"), "\(streamed.output) \(streamed.error)")

            // 6 MB is past the 1 MiB stream and 4 MiB connection windows: it arrives only if Teal
            // gives flow-control credit back as the instance takes the body.
            let bigFile = certificates.directory.appendingPathComponent("big.txt")
            try String(repeating: "0123456789", count: 600_000).write(to: bigFile, atomically: true, encoding: .utf8)
            let big = try await Self.h2(port, certificates, extra: ["-X", "PUT", "--data-binary", "@\(bigFile.path)", "-D", "-", "-o", "/dev/null"])
            #expect(big.output.contains("x-body-bytes: 6000000"), "\(big.output) \(big.error)")

            let large = try await Self.h2(port, certificates, extra: ["-H", "X-Response-Bytes: 2000000", "-o", "/dev/null", "-w", "%{size_download}"])
            #expect(large.output == "2000000", "\(large.output) \(large.error)")
            let head = try await Self.h2(port, certificates, extra: ["-I"])
            // At 1/1 the HEAD may go to either pool: the length is that of the body GET would get.
            let length = head.output.contains("x-backend: blue") ? "5" : "6"
            #expect(head.output.hasPrefix("HTTP/2 200") && head.output.contains("content-length: \(length)\r\n"), "\(head.output)")
        }
    }

    @Test("over HTTP/2 too: a request green fails (its instance refuses connections) is answered by blue, and the sticky version cookie names blue's version")
    func retryAndStickyOverHTTP2() async throws {
        let dead = try freePort()
        try await ServedRouter.with(extraArguments: ["--h2c"], green: "dead", instances: ["dead": dead]) { router in
            try router.writeRoutes(blue: ["blue"], extra: "sticky: {versionCookie: teal_version}\n")
            let admin = try AdminClient(address: "127.0.0.1:\(router.adminPort)", token: nil)
            let _: ReloadSummary = try await admin.send("POST", "/v1/reload")
            let split = try await router.teal(["split", "shop", "0/1"])
            #expect(split.status == 0, "\(split.output)")
            let run = try await curl(["-sS", "-i", "--http2-prior-knowledge", "http://127.0.0.1:\(router.proxyPort)/"])
            let answer = run.output.lowercased()
            #expect(answer.hasPrefix("http/2 200") && answer.hasSuffix("blue\n"), "\(run.output)\(run.error)")
            #expect(answer.contains("set-cookie: teal_version=1.0; path=/; httponly; samesite=lax"), "\(run.output)")
            let metrics = try await curl(["-sS", "http://127.0.0.1:\(router.adminPort)/metrics"])
            #expect(metrics.output.contains("teal_retries_total{route=\"shop\",from=\"green\",to=\"blue\",reason=\"connect\"} 1"), "\(metrics.output)")
        }
    }

    @Test("preview access over HTTP/2: the preview header, or the cookie in any of the request's cookie fields, reaches green whatever the split")
    func preview() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            try router.writeRoutes(blue: ["blue"], extra: "preview: {header: X-Teal-Pool, value: green, cookie: teal_pool}\n")
            let admin = try AdminClient(address: "127.0.0.1:\(router.adminPort)", token: nil)
            let _: ReloadSummary = try await admin.send("POST", "/v1/reload")
            // One curl per request: curl 7.88 fails a second request on a reused prior-knowledge
            // connection ("Error in the HTTP2 framing layer"; nginx's h2c does the same).
            func answer(_ headers: [String]) async throws -> String {
                let run = try await curl(["-sS", "--http2-prior-knowledge"] + headers.flatMap { ["-H", $0] } + ["http://127.0.0.1:\(router.proxyPort)/"])
                return run.output + run.error
            }
            #expect(try await answer([]) == "blue\n")
            #expect(try await answer(["x-teal-pool: green"]) == "green\n")
            #expect(try await answer(["x-teal-pool: other"]) == "blue\n")
            // HTTP/2 clients may send each cookie in a field of its own; Teal joins them.
            #expect(try await answer(["cookie: a=1", "cookie: teal_pool=green"]) == "green\n")
        }
    }

    @Test("a release rolls back on HTTP/2 traffic when green fails")
    func rollbackOnHTTP2() async throws {
        try await TLSTests.withTLSRouter { router, certificates, port in
            let start = try await router.teal(["rollout", "start", "shop", "--green-version", "1.2", "--green-instance", "127.0.0.1:\(router.ports["bad"]!)"])
            #expect(start.status == 0, "\(start.output)")
            // Stopped by a flag, not by cancelling the task: a cancelled batch's answers would be lost,
            // and a fast rollback can come before the first batch ends.
            let stopped = Atomic<Bool>(false)
            let load = Task {
                var answers = 0
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline, !stopped.load(ordering: .relaxed) {
                    let batch = try? await Self.h2(port, certificates, paths: Array(repeating: "/", count: 50), extra: ["-o", "/dev/null", "-w", "%{http_code}\\n"])
                    answers += batch?.output.split(separator: "\n").count ?? 0
                }
                return answers
            }
            let wait = try await router.teal(["rollout", "wait", "shop", "--timeout", "20"])
            stopped.store(true, ordering: .relaxed)
            #expect(wait.status == 1 && wait.output.contains("rolled-back") && wait.output.contains("error rate"), "\(wait.output)")
            #expect(await load.value > 0)
            let after = try await Self.h2(port, certificates, paths: ["/", "/", "/"])
            #expect(after.output == "blue\nblue\nblue\n", "\(after.output)")
        }
    }

    @Test("draining an HTTP/2 connection: GOAWAY, the stream in flight is answered, new connections are refused, exit 0")
    func drain() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"], blue: ["slow"]) { router in
            let url = "http://127.0.0.1:\(router.proxyPort)/"
            let inFlight = Task { try await curl(["-sS", "--http2-prior-knowledge", "-w", " %{http_version}", url]) }
            try await router.waitUntilRequestInFlight()
            router.server.send(SIGTERM)
            try await Task.sleep(for: .milliseconds(300))
            #expect(!TealProcess.canConnect(port: router.proxyPort), "still accepting after SIGTERM")
            let answer = try await inFlight.value
            #expect(answer.status == 0 && answer.output == "slow\n 2", "\(answer.output) \(answer.error)")
            #expect(await router.server.waitForExit(timeout: .seconds(10)) == 0, "\(router.server.log)")
        }
    }

    @Test("a client that stops giving window: the instance's reads pause and Teal's memory stays flat; reading resumes when the window opens")
    func stalledReader() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h2-stall-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let script = directory.appendingPathComponent("stall.py")
            try Self.stalledReader.write(to: script, atomically: true, encoding: .utf8)
            let before = residentBytes(pid: router.server.pid)
            // The client asks for 300 MB, takes the 64 KiB its window allows, then holds the
            // window shut for 2 s (when it prints "stalled", Teal's memory is sampled), then
            // opens it and reads another 4 MB.
            let client = Task { try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(router.proxyPort), "300000000"]) }
            var stalledGrowth = -1
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(50))
                if FileManager.default.fileExists(atPath: script.path + ".stalled") {
                    stalledGrowth = residentBytes(pid: router.server.pid) - before
                    break
                }
            }
            let result = try await client.value
            #expect(result.output.contains("held=65535") && result.output.contains("resumed=True"), "\(result.output)")
            #expect(stalledGrowth >= 0 && stalledGrowth < 48 << 20, "Teal grew by \(stalledGrowth >> 20) MiB while the client held its window shut")
        }
    }

    @Test("a malformed request head (a CR LF in a field value) gets RST_STREAM PROTOCOL_ERROR; the connection goes on serving")
    func malformedHead() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let script = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h2-malformed-\(UUID().uuidString).py")
            try Self.malformedHeadClient.write(to: script, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: script) }
            let result = try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(router.proxyPort)])
            #expect(result.output.contains("reset 1 1") && result.output.contains("status 3 200"), "\(result.output)")
        }
    }

    static let malformedHeadClient = h2cPrelude + """
        bad = BASE + literal(b"x-a", b"1\\r\\nx-injected: 1")
        s.sendall(PREFACE + frame(1, 0x5, 1, bad) + frame(1, 0x5, 3, BASE))
        seen = []
        def note(kind, flags, stream, payload):
            if kind == 3:
                seen.append(f"reset {stream} {int.from_bytes(payload, 'big')}")
            if kind == 1:
                # HEADERS: the first byte is :status from the static table (0x88 is 200).
                seen.append(f"status {stream} {200 if payload[:1] == bytes([0x88]) else payload[:1].hex()}")
        pump(10, note, lambda: any(line.startswith("status 3") for line in seen))
        print(" ".join(seen))
        """

    @Test("many concurrent uploads on one connection, together past the connection window: all arrive (credit is not stranded per stream)")
    func concurrentUploads() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let file = try Self.uploadFile(bytes: 300_000)
            defer { try? FileManager.default.removeItem(at: file) }
            // 20 streams × 300 kB = 6 MB in flight against a 4 MiB connection window; h2load
            // (Debian's nghttp2-client) sends every stream's body as its windows allow.
            let run = try await TealProcess.runCommand(["/usr/bin/h2load", "-n", "100", "-c", "1", "-m", "20", "-d", file.path, "--connection-inactivity-timeout=10",
                                                        "http://127.0.0.1:\(router.proxyPort)/"], timeout: .seconds(30))
            #expect(run.output.contains("100 succeeded, 0 failed"), "\(run.output)")
        }
    }

    @Test("connections that never finish a TLS handshake or never show their protocol on the h2c port are closed after the header read timeout (10 s)")
    func stalledHandshakes() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        try await ServedRouter.with(extraArguments: ["--h2c"], tlsArguments: certificates.arguments(["default", "shop", "api"])) { router in
            let tls = try #require(router.tlsPort)
            let script = certificates.directory.appendingPathComponent("stalled-handshakes.py")
            try Self.stalledHandshakes.write(to: script, atomically: true, encoding: .utf8)
            let run = try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(tls), String(router.proxyPort)], timeout: .seconds(30))
            // Closed by Teal: after 10 s, give or take the 250 ms deadline sweep; not by the script's 20 s limit.
            let seconds = run.output.split(whereSeparator: \.isWhitespace).compactMap { Double($0.split(separator: "=").last ?? "") }
            #expect(seconds.count == 3 && seconds.allSatisfy { $0 >= 9.5 && $0 < 13 }, "\(run.output)")
            let answer = try await curl(["-sS", "--http2-prior-knowledge", "http://127.0.0.1:\(router.proxyPort)/"])
            #expect(answer.output == "blue\n", "\(answer.output) \(answer.error)")
        }
    }

    /// Opens three connections that stall before their protocol is known: TLS with nothing sent,
    /// TLS with the start of a ClientHello, and the plain port with half the HTTP/2 preface; prints
    /// how long each took to be closed by the server (or 20 s).
    static let stalledHandshakes = """
        import socket, sys, time, select
        tls, plain = int(sys.argv[1]), int(sys.argv[2])
        sockets = [(socket.create_connection(("127.0.0.1", tls)), b""),
                   (socket.create_connection(("127.0.0.1", tls)), bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])),
                   (socket.create_connection(("127.0.0.1", plain)), b"PRI * HTTP/2.0\\r\\n")]
        start = time.time()
        for s, first in sockets:
            if first:
                s.sendall(first)
        closed = {}
        while len(closed) < len(sockets) and time.time() - start < 20:
            ready, _, _ = select.select([s for s, _ in sockets if s not in closed], [], [], 0.1)
            for s in ready:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed[s] = time.time() - start
        print(" ".join(f"closed={closed.get(s, 20):.2f}" for s, _ in sockets))
        """

    @Test("Expect: 100-continue over HTTP/2: the instance's 100 Continue reaches the client as an interim HEADERS, so the body goes without waiting")
    func expectContinue() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let file = try Self.uploadFile(bytes: 2_000_000)
            defer { try? FileManager.default.removeItem(at: file) }
            // curl waits up to --expect100-timeout for the 100 before it sends the body anyway.
            let upload = try await curl(["-sS", "--http2-prior-knowledge", "-H", "Expect: 100-continue", "--expect100-timeout", "8",
                                         "--data-binary", "@\(file.path)", "-D", "-", "-o", "/dev/null", "-w", "time=%{time_total}",
                                         "http://127.0.0.1:\(router.proxyPort)/"])
            #expect(upload.output.contains("HTTP/2 100") && upload.output.contains("x-body-bytes: 2000000"), "\(upload.output) \(upload.error)")
            let seconds = upload.output.components(separatedBy: "time=").last.flatMap(Double.init) ?? 99
            #expect(seconds < 4, "the upload waited \(seconds) s for 100 Continue")
        }
    }

    @Test("header lists: 15 kB in a connection's first request is served; past the 16 KiB limit the connection gets GOAWAY COMPRESSION_ERROR and Teal goes on serving")
    func headerListLimit() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let url = "http://127.0.0.1:\(router.proxyPort)/"
            let fits = try await curl(["-sS", "--http2-prior-knowledge", "-H", "x-big: " + String(repeating: "a", count: 15_000), url])
            #expect(fits.output == "blue\n", "\(fits.output) \(fits.error)")
            // nghttp prints the frames it receives: the GOAWAY names the error.
            let tooBig = try await TealProcess.runCommand(["/usr/bin/nghttp", "-nv", "-H", "x-big: " + String(repeating: "a", count: 20_000), url],
                                                          timeout: .seconds(20))
            #expect(tooBig.output.contains("recv GOAWAY") && tooBig.output.contains("COMPRESSION_ERROR"), "\(tooBig.output.suffix(600))")
            let after = try await curl(["-sS", "--http2-prior-knowledge", url])
            #expect(after.output == "blue\n", "\(after.output) \(after.error)")
        }
    }

    @Test("CONTINUATION, empty DATA and PING floods each get a GOAWAY with an error and are disconnected; other clients are served",
          arguments: ["continuation", "empty-data", "ping"])
    func frameFloods(kind: String) async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let script = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h2-flood-\(UUID().uuidString).py")
            try Self.frameFlood.write(to: script, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: script) }
            let flood = try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(router.proxyPort), kind], timeout: .seconds(30))
            #expect(flood.output.contains("closed=True") && !flood.output.contains("goaway=None") && !flood.output.contains("goaway=0 "),
                    "\(flood.output)")
            let answer = try await curl(["-sS", "--http2-prior-knowledge", "http://127.0.0.1:\(router.proxyPort)/"])
            #expect(answer.output == "blue\n", "\(answer.output) \(answer.error)")
        }
    }

    /// Python: `read_to_close(s)` reads what the server sends until it closes the connection or
    /// 5 s pass; returns the bytes and whether it closed.
    static let readToClose = """
        import socket
        def read_to_close(s):
            received, closed = b"", False
            s.settimeout(5)
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        closed = True
                        break
                    received += data
            except socket.timeout:
                pass
            except OSError:
                closed = True
            return received, closed

        """

    /// Sends one kind of frame flood, then reads until Teal closes the connection (or 5 s pass);
    /// prints whether it closed and the error code of the GOAWAY it got.
    static let frameFlood = h2cPrelude + readToClose + """
        kind = sys.argv[2]
        s.sendall(PREFACE)
        closed = False
        try:
            if kind == "continuation":
                # HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
                s.sendall(frame(1, 0x1, 1, BASE))
                for i in range(2000):
                    s.sendall(frame(9, 0, 1, literal(b"x-f", b"v")))
            elif kind == "empty-data":
                s.sendall(frame(1, 0x4, 1, BASE))
                for i in range(2000):
                    s.sendall(frame(0, 0, 1))
            else:
                # PINGs while reading none of the answers.
                for i in range(200):
                    s.sendall(frame(6, 0, 0, b"12345678") * 1000)
        except OSError:
            closed = True
        received, gone = read_to_close(s)
        closed, goaway = closed or gone, None
        at = 0
        while at + 9 <= len(received):
            length = int.from_bytes(received[at:at + 3], "big")
            if received[at + 3] == 7:
                goaway = int.from_bytes(received[at + 13:at + 17], "big")
            at += 9 + length
        print(f"closed={closed} goaway={goaway} ")
        """

    @Test("trailers both ways over HTTP/2: a chunked upload's trailer fields reach the instance, and the instance's answer trailers come back as trailing HEADERS")
    func trailers() async throws {
        let served = try await Self.withPythonInstance(Self.trailerInstance) { port, script in
            let upload = script.deletingLastPathComponent().appendingPathComponent("upload")
            try Data("hello".utf8).write(to: upload)
            try await ServedRouter.with(extraArguments: ["--h2c"], blue: ["echo"], instances: ["echo": port]) { router in
                // nghttp (Debian's nghttp2-client) sends the body without a length, then the trailer;
                // -v prints the fields of every HEADERS frame it receives.
                let run = try await TealProcess.runCommand(["/usr/bin/nghttp", "-v", "--no-content-length", "-d", upload.path,
                                                            "--trailer", "x-checksum: abc", "http://127.0.0.1:\(router.proxyPort)/"],
                                                           timeout: .seconds(20))
                #expect(run.output.contains("got 5 bytes; trailers: x-checksum: abc"), "\(run.output.suffix(1500))")
                #expect(run.output.contains("x-answer-checksum: 42"), "\(run.output.suffix(1500))")
            }
        }
        #expect(served.contains("trailers: x-checksum: abc"), "\(served)")
    }

    /// Runs `source`, a Python HTTP/1.1 instance taking its port as its argument and touching
    /// `<script>.listening` once it listens, on a free port; `body` gets the port and the script's
    /// path (its directory is scratch space, removed afterwards). Returns what the instance printed.
    static func withPythonInstance(_ source: String, _ body: (_ port: Int, _ script: URL) async throws -> Void) async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h2-instance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("instance.py")
        try source.write(to: script, atomically: true, encoding: .utf8)
        let port = try freePort()
        let instance = Task { try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(port)], timeout: .seconds(60)) }
        defer { instance.cancel() }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: script.path + ".listening") {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await body(port, script)
        return try await instance.value.output
    }

    /// Python for `withPythonInstance`: `accept_one()` listens on the port given as the script's
    /// argument (the first time; then touches `<script>.listening`) and returns the next
    /// connection.
    static let instancePrelude = """
        import socket, sys
        server = None
        def accept_one(receive_buffer=None):
            global server
            if server is None:
                server = socket.socket()
                if receive_buffer:
                    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                server.bind(("127.0.0.1", int(sys.argv[1])))
                server.listen(4)
                open(sys.argv[0] + ".listening", "w").close()
                server.settimeout(30)
            conn, _ = server.accept()
            conn.settimeout(30)
            return conn

        """

    /// An HTTP/1.1 instance for one request: reads a chunked body and its trailer section, and
    /// answers chunked with what it got, followed by a trailer field of its own.
    static let trailerInstance = instancePrelude + """
        conn = accept_one()
        pending = b""
        def line():
            global pending
            while b"\\r\\n" not in pending:
                pending += conn.recv(65536)
            text, pending = pending.split(b"\\r\\n", 1)
            return text
        while line():
            pass
        received, trailers = 0, []
        while True:
            size = int(line().split(b";")[0], 16)
            if size == 0:
                break
            while len(pending) < size + 2:
                pending += conn.recv(65536)
            received += size
            pending = pending[size + 2:]
        while True:
            field = line()
            if not field:
                break
            trailers.append(field.decode())
        body = f"got {received} bytes; trailers: {'; '.join(trailers)}".encode()
        conn.sendall(b"HTTP/1.1 200 OK\\r\\ntransfer-encoding: chunked\\r\\nconnection: close\\r\\n\\r\\n"
                     + f"{len(body):x}".encode() + b"\\r\\n" + body + b"\\r\\n0\\r\\nX-Answer-Checksum: 42\\r\\n\\r\\n")
        conn.close()
        print(body.decode())
        """

    @Test("an instance that answers before the upload is over: the whole answer reaches the HTTP/2 client, then RST_STREAM NO_ERROR stops the upload")
    func earlyAnswer() async throws {
        _ = try await Self.withPythonInstance(Self.earlyAnswerInstance) { port, script in
            let upload = script.deletingLastPathComponent().appendingPathComponent("upload")
            try Data(repeating: UInt8(ascii: "u"), count: 10_000_000).write(to: upload)
            try await ServedRouter.with(extraArguments: ["--h2c"], blue: ["early"], instances: ["early": port]) { router in
                let run = try await TealProcess.runCommand(["/usr/bin/nghttp", "-v", "-d", upload.path, "http://127.0.0.1:\(router.proxyPort)/"],
                                                           timeout: .seconds(20))
                // The body, with END_STREAM, comes before the reset (a reset first would drop it).
                let body = run.output.range(of: "too big"), reset = run.output.range(of: "recv RST_STREAM")
                #expect(run.output.contains(":status: 413") && body != nil && reset != nil
                        && body!.lowerBound < reset!.lowerBound && run.output.contains("NO_ERROR"), "\(run.output.suffix(1500))")
            }
        }
    }

    /// An HTTP/1.1 instance for one request that answers 413 as soon as it has the head, without
    /// reading the body, and closes.
    static let earlyAnswerInstance = instancePrelude + """
        conn = accept_one()
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            head += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\\r\\ncontent-length: 8\\r\\nconnection: close\\r\\n\\r\\ntoo big\\n")
        conn.close()
        print("answered")
        """

    @Test("an upload to an instance that stops reading: Teal holds the client's credit, its memory stays flat, and the whole body arrives once the instance reads")
    func uploadToStalledInstance() async throws {
        let size = 48_000_000
        let served = try await Self.withPythonInstance(Self.stalledInstance) { port, script in
            let upload = script.deletingLastPathComponent().appendingPathComponent("upload")
            try Data(repeating: UInt8(ascii: "u"), count: size).write(to: upload)
            try await ServedRouter.with(extraArguments: ["--h2c"], blue: ["stalled"], instances: ["stalled": port]) { router in
                let before = residentBytes(pid: router.server.pid)
                let client = Task {
                    try await curl(["-sS", "--http2-prior-knowledge", "--data-binary", "@\(upload.path)", "-w", " %{http_version}",
                                    "http://127.0.0.1:\(router.proxyPort)/"], timeout: .seconds(60))
                }
                // The instance reads the head, then nothing for 3 s; Teal's memory is sampled 2.5 s in,
                // when the client has long had time to send everything Teal would take.
                var stalledGrowth = -1
                for _ in 0..<200 {
                    try await Task.sleep(for: .milliseconds(50))
                    if FileManager.default.fileExists(atPath: script.path + ".stalled") {
                        try await Task.sleep(for: .milliseconds(2500))
                        stalledGrowth = residentBytes(pid: router.server.pid) - before
                        break
                    }
                }
                let answer = try await client.value
                #expect(answer.output == "received \(size) 2", "\(answer.output) \(answer.error)")
                #expect(stalledGrowth >= 0 && stalledGrowth < 24 << 20, "Teal grew by \(stalledGrowth >> 20) MiB while the instance did not read")
            }
        }
        #expect(served.contains("received \(size)"), "\(served)")
    }

    /// An HTTP/1.1 instance for one request with a small receive buffer: it reads the request
    /// head, stops reading for 3 s, then reads the body (sized or chunked) and answers with the
    /// number of body bytes it got.
    static let stalledInstance = instancePrelude + """
        import time
        conn = accept_one(receive_buffer=65536)
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            data += conn.recv(4096)
        head, body = data.split(b"\\r\\n\\r\\n", 1)
        fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip() for line in head.split(b"\\r\\n")[1:]}
        open(sys.argv[0] + ".stalled", "w").close()
        time.sleep(3)
        if b"content-length" in fields:
            total, received = int(fields[b"content-length"]), len(body)
            while received < total:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        else:
            received = 0
            while True:
                while b"\\r\\n" not in body:
                    body += conn.recv(1 << 20)
                line, body = body.split(b"\\r\\n", 1)
                size = int(line.split(b";")[0], 16)
                while len(body) < size + 2:
                    body += conn.recv(1 << 20)
                received += size
                body = body[size + 2:]
                if size == 0:
                    break
        answer = f"received {received}".encode()
        conn.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: " + str(len(answer)).encode() + b"\\r\\nconnection: close\\r\\n\\r\\n" + answer)
        conn.close()
        print(answer.decode())
        """

    /// A temporary file of `bytes` bytes to upload; the caller removes it.
    static func uploadFile(bytes: Int) throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h2-upload-\(UUID().uuidString)")
        try Data(repeating: UInt8(ascii: "u"), count: bytes).write(to: file)
        return file
    }

    /// Raw HTTP/2 with prior knowledge (h2c) for the tests that need frames curl will not send:
    /// frame and header-block helpers, and `pump`, which reads frames (acking SETTINGS) and hands
    /// them to `handle` until `done()` or the time is up.
    static let h2cPrelude = """
        import socket, struct, sys, time
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        def frame(kind, flags, stream, payload=b""):
            return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
        def literal(name, value):
            return bytes([0, len(name)]) + name + bytes([len(value)]) + value
        BASE = bytes([0x82, 0x86, 0x84]) + literal(b":authority", b"shop.test")
        PREFACE = b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + frame(4, 0, 0)
        pending = b""
        def pump(seconds, handle, done):
            global pending
            until = time.time() + seconds
            s.settimeout(0.2)
            while time.time() < until and not done():
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= 9 and len(pending) >= 9 + int.from_bytes(pending[:3], "big"):
                    length, kind, flags = int.from_bytes(pending[:3], "big"), pending[3], pending[4]
                    stream, payload = int.from_bytes(pending[5:9], "big") & 0x7FFFFFFF, pending[9:9 + length]
                    pending = pending[9 + length:]
                    if kind == 4 and not flags & 1:
                        s.sendall(frame(4, 1, 0))
                    handle(kind, flags, stream, payload)

        """

    static let stalledReader = h2cPrelude + """
        s.sendall(PREFACE + frame(1, 0x5, 1, BASE + literal(b"x-response-bytes", sys.argv[2].encode())))
        data = 0
        def count(kind, flags, stream, payload):
            global data
            if kind == 0 and stream == 1:
                data += len(payload)
        pump(2, count, lambda: False)
        held = data
        open(sys.argv[0] + ".stalled", "w").close()
        time.sleep(1)
        s.sendall(frame(8, 0, 0, struct.pack(">I", 64 << 20)) + frame(8, 0, 1, struct.pack(">I", 64 << 20)))
        pump(10, count, lambda: data >= held + (4 << 20))
        print(f"held={held} resumed={data >= held + (4 << 20)}")
        """

    @Test("teal serve --h2c: cleartext HTTP/2 with prior knowledge and HTTP/1.1 on the same plain port")
    func cleartext() async throws {
        try await ServedRouter.with(extraArguments: ["--h2c"]) { router in
            let url = "http://127.0.0.1:\(router.proxyPort)/"
            let h2c = try await curl(["-sS", "--http2-prior-knowledge", "-H", "X-Echo: headers", "-w", "%{http_version}", url])
            #expect(h2c.output.hasSuffix("2") && h2c.output.contains("X-Forwarded-Proto: http\n"), "\(h2c.output) \(h2c.error)")
            let h1 = try await curl(["-sS", "--http1.1", "-w", " %{http_version}", url, url])
            #expect(h1.output == "blue\n 1.1blue\n 1.1", "\(h1.output) \(h1.error)")
            let post = try await curl(["-sS", "--http1.1", "-X", "POST", "-d", "x=1", "-D", "-", "-o", "/dev/null", url])
            #expect(post.output.contains("X-Request-Method: POST"), "\(post.output)")
        }
    }

    static let rapidReset = readToClose + """
        import socket, ssl, struct, sys, time
        port, count, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="shop.test")
        assert s.selected_alpn_protocol() == "h2"
        def frame(kind, flags, stream, payload=b""):
            return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
        block = bytes([0x82, 0x87, 0x84, 0x41, 9]) + b"shop.test"
        s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + frame(4, 0, 0))
        sent, closed = 0, False
        try:
            for i in range(count):
                s.sendall(frame(1, 0x5, 2 * i + 1, block) + frame(3, 0, 2 * i + 1, struct.pack(">I", 8)))
                sent += 1
        except OSError:
            closed = True
        received, gone = read_to_close(s)
        closed = closed or gone
        # A GOAWAY frame: type 7 on stream 0, error code ENHANCE_YOUR_CALM (0xb) at the end.
        goaway = b"\\x07\\x00\\x00\\x00\\x00\\x00" in received and b"\\x00\\x00\\x00\\x0b" in received
        print(f"closed={closed} goaway={goaway}")
        """

    @Test("a rapid-reset flood (CVE-2023-44487) gets GOAWAY and is disconnected while other clients are served")
    func rapidResetFlood() async throws {
        try await TLSTests.withTLSRouter { router, certificates, port in
            let script = certificates.directory.appendingPathComponent("rapid.py")
            try Self.rapidReset.write(to: script, atomically: true, encoding: .utf8)
            let flood = Task { try await TealProcess.runCommand(["/usr/bin/python3", script.path, String(port), "5000", certificates.path("ca.pem")]) }
            var served = 0
            for _ in 0..<5 {
                let answer = try await Self.h2(port, certificates)
                if answer.output == "blue\n" { served += 1 }
            }
            let result = try await flood.value
            #expect(result.output.contains("closed=True goaway=True"), "\(result.output)")
            #expect(served == 5)
            let metrics = try await curl(["-s", "http://127.0.0.1:\(router.adminPort)/metrics"])
            let line = metrics.output.split(separator: "\n").first { $0.hasPrefix("teal_pool_requests_total{route=\"shop\",pool=\"blue\"") }
            let requests = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
            #expect(requests >= 5 && requests < 200, "the flood's reset streams cost at most the reset limit: \(line ?? "none")")
        }
    }
}
