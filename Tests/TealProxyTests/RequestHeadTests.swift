import NIOCore
@testable import TealProxy
import Testing

/// Parses heads given as strings, the way the proxy does: `HTTPBytes.findHeadEnd`, then the parser.
enum HeadFixture {
    struct Request {
        let bytes: [UInt8]
        let head: RequestHead

        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        var method: String { text(0..<head.methodEnd) }
        var target: String { text(head.target) }
        var host: String? { head.host.map(text) }
        var path: String { bytes.withUnsafeBytes { text(head.path($0)) } }
        /// The header lines the proxy forwards, in order, each with its CRLF.
        var keptHeaders: String {
            var kept: [UInt8] = []
            bytes.withUnsafeBytes { raw in
                head.headers.forEachKeptRange(raw) { kept.append(contentsOf: raw[$0]) }
            }
            return String(decoding: kept, as: UTF8.self)
        }
        /// The whole head the proxy sends upstream for this request (client 192.0.2.9 over plain
        /// HTTP, request id `test-id` when the request has none).
        var forwarded: String {
            var buffer = ByteBuffer()
            bytes.withUnsafeBytes { raw in
                HeadWriter.upstreamRequest(raw, head, client: HeadWriter.Client(address: Array("192.0.2.9".utf8), isTLS: false),
                                           constants: ProxyHeaderBytes(viaName: "teal"), into: &buffer) { $0.writeStaticString("test-id") }
            }
            return String(buffer: buffer)
        }
    }

    struct Response {
        let bytes: [UInt8]
        let head: ResponseHead

        var keptHeaders: String {
            var kept: [UInt8] = []
            bytes.withUnsafeBytes { raw in
                head.headers.forEachKeptRange(raw) { kept.append(contentsOf: raw[$0]) }
            }
            return String(decoding: kept, as: UTF8.self)
        }
        /// The whole head the proxy sends to an HTTP/1.x client for this answer.
        var forwarded: String {
            var buffer = ByteBuffer()
            bytes.withUnsafeBytes { raw in
                HeadWriter.clientResponse(raw, head, close: false, constants: ProxyHeaderBytes(viaName: "teal"), into: &buffer)
            }
            return String(buffer: buffer)
        }
    }

    struct Incomplete: Error {}

    static func request(_ text: String, limits: HeadLimits = HeadLimits()) throws -> Request {
        let bytes = Array(text.utf8)
        let head = try bytes.withUnsafeBytes { raw throws -> RequestHead in
            guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { throw Incomplete() }
            return try RequestHead.parse(raw, headEnd: end, limits: limits)
        }
        return Request(bytes: bytes, head: head)
    }

    /// The error a request head is refused with; `nil` when it parses (or is incomplete, which is
    /// recorded as an issue).
    static func requestError(_ text: String, limits: HeadLimits = HeadLimits()) -> RequestHeadError? {
        do {
            _ = try request(text, limits: limits)
            return nil
        } catch let error as RequestHeadError {
            return error
        } catch {
            Issue.record("head is incomplete: \(text.debugDescription)")
            return nil
        }
    }

    static func response(_ text: String, requestIsHead: Bool = false) throws -> Response {
        let bytes = Array(text.utf8)
        let head = try bytes.withUnsafeBytes { raw throws -> ResponseHead in
            guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { throw Incomplete() }
            return try ResponseHead.parse(raw, headEnd: end, requestIsHead: requestIsHead)
        }
        return Response(bytes: bytes, head: head)
    }

    static func responseError(_ text: String, requestIsHead: Bool = false) -> RequestHeadError? {
        do {
            _ = try response(text, requestIsHead: requestIsHead)
            return nil
        } catch let error as RequestHeadError {
            return error
        } catch {
            Issue.record("head is incomplete: \(text.debugDescription)")
            return nil
        }
    }

    /// `GET / HTTP/1.1` with `Host: h` and the given header lines.
    static func get(_ lines: String...) -> String {
        "GET / HTTP/1.1\r\nHost: h\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n"
    }

    /// `POST / HTTP/1.1` with `Host: h` and the given header lines.
    static func post(_ lines: String...) -> String {
        "POST /submit HTTP/1.1\r\nHost: h\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n"
    }
}

@Suite struct RequestHeadParsingTests {
    @Test func validGet() throws {
        let request = try HeadFixture.request(
            "GET /index.html?x=1 HTTP/1.1\r\nHost: Shop.Example.com:8080\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n")
        #expect(request.method == "GET")
        #expect(request.target == "/index.html?x=1")
        #expect(request.path == "/index.html?x=1")
        #expect(request.host == "Shop.Example.com:8080")
        #expect(request.head.isHTTP11)
        #expect(request.head.framing == .none)
        #expect(request.head.keepAlive)
        #expect(request.head.isIdempotent)
        #expect(!request.head.isHead)
        #expect(!request.head.isConnect)
        #expect(!request.head.wantsUpgrade)
        #expect(request.head.headers.start == "GET /index.html?x=1 HTTP/1.1\r\n".utf8.count)
        #expect(request.head.headers.headEnd == request.bytes.count)
        #expect(request.keptHeaders == "Host: Shop.Example.com:8080\r\nAccept: */*\r\nUser-Agent: t/1\r\n")
    }

    @Test func http10WithoutHost() throws {
        let request = try HeadFixture.request("GET /old HTTP/1.0\r\n\r\n")
        #expect(!request.head.isHTTP11)
        #expect(request.host == nil)
        #expect(request.target == "/old")
        #expect(!request.head.keepAlive)
        #expect(request.keptHeaders == "")
    }

    @Test func headerValuesAreTrimmedAndNamesCaseInsensitive() throws {
        let request = try HeadFixture.request("GET / HTTP/1.1\r\nhOsT: \t a.example \t\r\ncontent-LENGTH:   12  \r\n\r\n")
        #expect(request.host == "a.example")
        #expect(request.head.framing == .length(12))
    }

    @Test(arguments: ["[::1]:8080", "10.0.0.1", "a-b_c.example.com", "xn--bcher-kva.example", "host%20x", "~h"])
    func acceptsValidHosts(host: String) throws {
        let request = try HeadFixture.request("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")
        #expect(request.host == host)
    }

    @Test func emptyHostIsAccepted() throws {
        let request = try HeadFixture.request("GET / HTTP/1.1\r\nHost:\r\n\r\n")
        #expect(request.head.host?.isEmpty == true)
    }

    @Test func asteriskAndAbsoluteFormTargets() throws {
        #expect(try HeadFixture.request("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").target == "*")
        #expect(try HeadFixture.request("GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n").target == "http://h/p?q")
        #expect(try HeadFixture.request("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n").head.isConnect)
    }

    @Test(arguments: [
        ("/p?q", "/p?q"), ("/", "/"), ("*", "*"),
        ("http://h/p?q", "/p?q"), ("http://h:8080/a/b", "/a/b"), ("https://h/x", "/x"),
        ("HTTP://H/Up", "/Up"),
    ])
    func path(target: String, path: String) throws {
        let request = try HeadFixture.request("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(request.path == path)
    }

    @Test(arguments: [
        ("GET", true), ("HEAD", true), ("PUT", true), ("DELETE", true), ("OPTIONS", true), ("TRACE", true),
        ("POST", false), ("PATCH", false), ("CONNECT", false), ("PROPFIND", false), ("get", false), ("put", false),
        // Found by the libFuzzer harness: only the first letter was checked for case.
        ("GeT", false), ("HeAD", false), ("OPTIONs", false), ("DELETe", false),
    ])
    func idempotentMethods(method: String, idempotent: Bool) throws {
        let target = method == "CONNECT" ? "h:443" : "/"
        let request = try HeadFixture.request("\(method) \(target) HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(request.head.isIdempotent == idempotent)
        #expect(request.head.isHead == (method == "HEAD"))
        #expect(request.method == method)
    }

    @Test(arguments: [
        ("HTTP/1.1", nil, true),
        ("HTTP/1.1", "close", false),
        ("HTTP/1.1", "Close", false),
        ("HTTP/1.1", "keep-alive", true),
        ("HTTP/1.1", "keep-alive, close", false),
        ("HTTP/1.1", "foo, close", false),
        ("HTTP/1.0", nil, false),
        ("HTTP/1.0", "keep-alive", true),
        ("HTTP/1.0", "Keep-Alive", true),
        ("HTTP/1.0", "close", false),
        ("HTTP/1.0", "keep-alive, close", false),
    ] as [(String, String?, Bool)])
    func keepAlive(version: String, connection: String?, keepAlive: Bool) throws {
        let connectionLine = connection.map { "Connection: \($0)\r\n" } ?? ""
        let request = try HeadFixture.request("GET / \(version)\r\nHost: h\r\n\(connectionLine)\r\n")
        #expect(request.head.keepAlive == keepAlive)
    }

    @Test func repeatedConnectionHeadersCombine() throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: keep-alive", "Connection: close"))
        #expect(!request.head.keepAlive)
    }

    @Test(arguments: [
        ("Content-Length: 10", BodyFraming.length(10)),
        ("Content-Length: 0", .none),
        ("Content-Length: 000", .none),
        ("Content-Length: 007", .length(7)),
        ("Content-Length: 999999999999999999", .length(999_999_999_999_999_999)),
        ("Transfer-Encoding: chunked", .chunked),
        ("Transfer-Encoding: CHUNKED", .chunked),
        ("X-Nothing: 1", .none),
    ])
    func framing(line: String, framing: BodyFraming) throws {
        let request = try HeadFixture.request(HeadFixture.post(line))
        #expect(request.head.framing == framing)
    }

    @Test func transferEncodingAcrossLines() throws {
        #expect(HeadFixture.requestError(HeadFixture.post("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"))
            == .transferCodingNotImplemented)
        #expect(HeadFixture.requestError(HeadFixture.post("Transfer-Encoding: chunked", "Transfer-Encoding: gzip"))
            == .transferEncodingNotChunked)
    }

    @Test func upgradeRequest() throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: k"))
        #expect(request.head.wantsUpgrade)
        #expect(request.head.upgrade.map(request.text) == "websocket")
        // The Upgrade line is written again by the proxy itself when the upgrade is forwarded.
        #expect(request.keptHeaders == "Host: h\r\nSec-WebSocket-Key: k\r\n")

        let notUpgrading = try HeadFixture.request(HeadFixture.get("Upgrade: websocket"))
        #expect(!notUpgrading.head.wantsUpgrade)
        #expect(notUpgrading.keptHeaders == "Host: h\r\n")
    }

    @Test func upgradeWithoutUpgradeHeaderIsNotAnUpgrade() throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: upgrade"))
        #expect(!request.head.wantsUpgrade)
    }
}

@Suite struct RequestHeadRejectionTests {
    @Test(arguments: [
        // Content-Length with Transfer-Encoding (RFC 9112 §6.1: request smuggling)
        (HeadFixture.post("Content-Length: 5", "Transfer-Encoding: chunked"), RequestHeadError.contentLengthWithTransferEncoding),
        (HeadFixture.post("Transfer-Encoding: chunked", "Content-Length: 5"), .contentLengthWithTransferEncoding),
        (HeadFixture.post("Transfer-Encoding: chunked", "Content-Length: 0"), .contentLengthWithTransferEncoding),
        // duplicate Content-Length, also with equal values
        (HeadFixture.post("Content-Length: 5", "Content-Length: 6"), .duplicateContentLength),
        (HeadFixture.post("Content-Length: 5", "Content-Length: 5"), .duplicateContentLength),
        (HeadFixture.post("Content-Length: 5", "content-length: 5"), .duplicateContentLength),
        // invalid Content-Length
        (HeadFixture.post("Content-Length: 12a"), .invalidContentLength),
        (HeadFixture.post("Content-Length: -1"), .invalidContentLength),
        (HeadFixture.post("Content-Length:"), .invalidContentLength),
        (HeadFixture.post("Content-Length:   "), .invalidContentLength),
        (HeadFixture.post("Content-Length: +5"), .invalidContentLength),
        (HeadFixture.post("Content-Length: 5, 5"), .invalidContentLength),
        (HeadFixture.post("Content-Length: 1 2"), .invalidContentLength),
        (HeadFixture.post("Content-Length: 0x10"), .invalidContentLength),
        (HeadFixture.post("Content-Length: 1234567890123456789"), .invalidContentLength),
        // Transfer-Encoding that does not end in chunked
        (HeadFixture.post("Transfer-Encoding: gzip"), .transferEncodingNotChunked),
        (HeadFixture.post("Transfer-Encoding: chunked, gzip"), .transferEncodingNotChunked),
        (HeadFixture.post("Transfer-Encoding: chunkedx"), .transferEncodingNotChunked),
        (HeadFixture.post("Transfer-Encoding:"), .transferEncodingInvalid),
        // Transfer-Encoding in HTTP/1.0
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .transferEncodingInHTTP10),
        ("POST / HTTP/1.0\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .transferEncodingInHTTP10),
        // obs-fold
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n", .obsFold),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\tc\r\n\r\n", .obsFold),
        ("GET / HTTP/1.1\r\n Host: h\r\n\r\n", .obsFold),
        // bare LF line ends
        ("GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", .bareLineFeed),
        ("GET / HTTP/1.1\nHost: h\r\n\r\n", .bareLineFeed),
        ("GET / HTTP/1.1\nHost: h\n\n", .bareLineFeed),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\n\n", .bareLineFeed),
        // bare CR inside a value, and other control characters
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{0}b\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{7F}b\r\n\r\n", .invalidHeader),
        // Host
        ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", .missingHost),
        ("GET / HTTP/1.1\r\n\r\n", .missingHost),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .repeatedHost),
        ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", .repeatedHost),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .invalidHost),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .invalidHost),
        ("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", .invalidHost),
        ("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", .invalidHost),
        ("GET / HTTP/1.1\r\nHost: a\u{80}\r\n\r\n", .invalidHost),
        // header names
        ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", .invalidHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n", .invalidHeader),
        // versions
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", .unsupportedVersion),
        ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", .unsupportedVersion),
        ("GET / HTTP/0.9\r\nHost: h\r\n\r\n", .unsupportedVersion),
        // request lines
        ("GARBAGE\r\nHost: h\r\n\r\n", .badRequestLine),
        ("\u{16}\u{03}\u{01}\u{02}\r\n\r\n", .badRequestLine),
        ("GET /\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", .badRequestLine),
        (" GET / HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET / XTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET / HTTP/1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET / HTTP/a.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET / http/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET /a\u{7F}b HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
        ("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", .badRequestLine),
    ])
    func refuses(head: String, error: RequestHeadError) {
        #expect(HeadFixture.requestError(head) == error, "\(head.debugDescription)")
    }

    @Test(arguments: [
        (RequestHeadError.badRequestLine, 400), (.unsupportedVersion, 505), (.uriTooLong, 414),
        (.headersTooLarge, 431), (.tooManyHeaders, 431), (.invalidHeader, 400), (.obsFold, 400),
        (.bareLineFeed, 400), (.missingHost, 400), (.repeatedHost, 400), (.invalidHost, 400),
        (.invalidContentLength, 400), (.duplicateContentLength, 400), (.contentLengthWithTransferEncoding, 400),
        (.transferEncodingNotChunked, 400), (.transferEncodingInHTTP10, 400),
    ])
    func statusCodes(error: RequestHeadError, status: Int) {
        #expect(error.status == status)
        #expect(!error.name.isEmpty)
        #expect(!error.message.isEmpty)
    }

    @Test func errorNamesAreDistinct() {
        let all: [RequestHeadError] = [
            .badRequestLine, .unsupportedVersion, .uriTooLong, .headersTooLarge, .tooManyHeaders, .invalidHeader,
            .obsFold, .bareLineFeed, .missingHost, .repeatedHost, .invalidHost, .invalidContentLength,
            .duplicateContentLength, .contentLengthWithTransferEncoding, .transferEncodingNotChunked,
            .transferEncodingInHTTP10,
        ]
        #expect(Set(all.map(\.name)).count == all.count)
        #expect(RequestHeadError.obsFold.name == "obsolete-line-folding")
        #expect(RequestHeadError.unsupportedVersion.name == "unsupported-http-version")
    }

    private func headers(_ count: Int) -> String {
        (0..<count).map { "X-H\($0): v\r\n" }.joined()
    }

    @Test func headerCountLimit() throws {
        // Host plus 99 others is 100 header fields: allowed.
        let allowed = try HeadFixture.request("GET / HTTP/1.1\r\nHost: h\r\n" + headers(99) + "\r\n")
        #expect(allowed.keptHeaders.hasSuffix("X-H98: v\r\n"))
        // 101 header fields: 431.
        let error = HeadFixture.requestError("GET / HTTP/1.1\r\nHost: h\r\n" + headers(100) + "\r\n")
        #expect(error == .tooManyHeaders)
        #expect(error?.status == 431)
    }

    @Test func headerCountLimitIsConfigurable() {
        var limits = HeadLimits()
        limits.maxHeaderCount = 3
        #expect(HeadFixture.requestError(HeadFixture.get("A: 1", "B: 2"), limits: limits) == nil)
        #expect(HeadFixture.requestError(HeadFixture.get("A: 1", "B: 2", "C: 3"), limits: limits) == .tooManyHeaders)
        // Beyond the 128 lines the drop mask can hold, the limit holds whatever is configured.
        limits.maxHeaderCount = 1000
        #expect(HeadFixture.requestError("GET / HTTP/1.1\r\nHost: h\r\n" + headers(200) + "\r\n", limits: limits) == .tooManyHeaders)
    }

    @Test func headLargerThanTheLimit() {
        let limits = HeadLimits()
        let big = String(repeating: "a", count: 1000)
        let head = "GET / HTTP/1.1\r\nHost: h\r\n" + (0..<40).map { "X-Big\($0): \(big)\r\n" }.joined() + "\r\n"
        #expect(head.utf8.count > limits.maxHeadBytes)
        let error = HeadFixture.requestError(head)
        #expect(error == .headersTooLarge)
        #expect(error?.status == 431)

        var small = HeadLimits()
        small.maxHeadBytes = 64
        let exact = "GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "y", count: 64 - 32) + "\r\n\r\n"
        #expect(exact.utf8.count == 64)
        #expect(HeadFixture.requestError(exact, limits: small) == nil)
        small.maxHeadBytes = 63
        #expect(HeadFixture.requestError(exact, limits: small) == .headersTooLarge)
    }

    @Test func requestLineLongerThanTheLimit() {
        let limits = HeadLimits()
        let longTarget = "/" + String(repeating: "x", count: limits.maxRequestLineBytes)
        let error = HeadFixture.requestError("GET \(longTarget) HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(error == .uriTooLong)
        #expect(error?.status == 414)
        // A request line of exactly the limit (without its CRLF) is fine.
        let fitting = "/" + String(repeating: "x", count: limits.maxRequestLineBytes - "GET / HTTP/1.1".utf8.count)
        let line = "GET \(fitting) HTTP/1.1"
        #expect(line.utf8.count == limits.maxRequestLineBytes)
        #expect(HeadFixture.requestError(line + "\r\nHost: h\r\n\r\n") == nil)
    }
}

@Suite struct RequestHeadForwardingTests {
    @Test func hopByHopHeadersAreDropped() throws {
        let request = try HeadFixture.request(
            "GET /x HTTP/1.1\r\n"
                + "Host: h\r\n"
                + "Connection: foo, Bar\r\n"
                + "Foo: 1\r\n"
                + "Keep-Alive: timeout=5\r\n"
                + "TE: trailers\r\n"
                + "Accept: text/html\r\n"
                + "Proxy-Connection: keep-alive\r\n"
                + "Upgrade: h2c\r\n"
                + "X-Forwarded-For: 192.0.2.1\r\n"
                + "X-Forwarded-Host: other\r\n"
                + "X-Forwarded-Proto: https\r\n"
                + "Via: 1.1 edge\r\n"
                + "bar: 2\r\n"
                + "Cookie: a=b\r\n"
                + "foo-extra: 3\r\n"
                + "User-Agent: t\r\n"
                + "\r\n")
        #expect(request.keptHeaders == "Host: h\r\nAccept: text/html\r\nCookie: a=b\r\nfoo-extra: 3\r\nUser-Agent: t\r\n")
        #expect(request.head.forwardedFor.map(request.text) == "192.0.2.1")
        #expect(request.head.via.map(request.text) == "1.1 edge")
        #expect(request.head.upgrade == nil)  // h2c upgrades are left out
        #expect(!request.head.wantsUpgrade)
        #expect(request.head.hasConnectionOptions)
    }

    @Test func nothingDroppedKeepsEveryLineInOrder() throws {
        let lines = ["Host: h", "B: 2", "A: 1", "Content-Type: text/plain", "Content-Length: 3", "Expect: 100-continue"]
        let request = try HeadFixture.request("PUT /p HTTP/1.1\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n")
        #expect(request.keptHeaders == lines.map { $0 + "\r\n" }.joined())
        #expect(request.head.framing == .length(3))
    }

    @Test func droppedLinesAtTheStartAndEnd() throws {
        let request = try HeadFixture.request("GET / HTTP/1.1\r\nConnection: close\r\nHost: h\r\nA: 1\r\nTE: x\r\n\r\n")
        #expect(request.keptHeaders == "Host: h\r\nA: 1\r\n")
        let allDropped = try HeadFixture.request("GET / HTTP/1.0\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n")
        #expect(allDropped.keptHeaders == "")
    }

    @Test func firstForwardedForAndViaAreRemembered() throws {
        let request = try HeadFixture.request(HeadFixture.get(
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2", "X-Forwarded-For: 3.3.3.3", "Via: 1.0 a", "Via: 1.1 b"))
        #expect(request.head.forwardedFor.map(request.text) == "1.1.1.1, 2.2.2.2")
        #expect(request.head.via.map(request.text) == "1.0 a")
        #expect(request.keptHeaders == "Host: h\r\n")
    }

    @Test func requestIDFirstKeptRepeatsAndEmptyDropped() throws {
        let request = try HeadFixture.request(HeadFixture.get("X-Request-Id: abc", "X-Request-ID: def"))
        #expect(request.head.requestID.map(request.text) == "abc")
        #expect(request.keptHeaders == "Host: h\r\nX-Request-Id: abc\r\n")

        let empty = try HeadFixture.request(HeadFixture.get("X-Request-Id:", "A: 1"))
        #expect(empty.head.requestID == nil)
        #expect(empty.keptHeaders == "Host: h\r\nA: 1\r\n")
    }

    @Test func connectionOptionsAreMatchedCaseInsensitivelyAndWholly() throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: X-Secret , ,x-other", "x-secret: 1", "X-OTHER: 2", "X-Secret-2: 3", "X-Secre: 4"))
        #expect(request.keptHeaders == "Host: h\r\nX-Secret-2: 3\r\nX-Secre: 4\r\n")
    }

    @Test func manyHeadersBeyondSixtyFourDropCorrectly() throws {
        // The drop mask has two words; exercise a dropped line past index 64.
        let filler = (0..<70).map { "X-F\($0): v" }
        var lines = filler
        lines.append("TE: trailers")
        lines.append("X-Last: 1")
        let request = try HeadFixture.request(HeadFixture.get(lines.joined(separator: "\r\n")))
        #expect(request.keptHeaders == "Host: h\r\n" + filler.map { $0 + "\r\n" }.joined() + "X-Last: 1\r\n")
    }

    /// A Connection option that names a framing header must not make the proxy forward the request
    /// without the header that frames its body: the proxy reads the body by Content-Length (or
    /// chunked), and an upstream that gets the head without it reads the body bytes as the next
    /// request (request smuggling). Either refusing the request or keeping the line is correct.
    @Test(arguments: [
        (HeadFixture.post("Content-Length: 5", "Connection: content-length"), "Content-Length: 5\r\n"),
        (HeadFixture.post("Connection: Content-Length", "Content-Length: 5"), "Content-Length: 5\r\n"),
        (HeadFixture.post("Transfer-Encoding: chunked", "Connection: transfer-encoding"), "Transfer-Encoding: chunked\r\n"),
    ])
    func connectionOptionsNeverRemoveBodyFraming(head: String, framingLine: String) {
        do {
            let request = try HeadFixture.request(head)
            #expect(request.forwarded.contains(framingLine),
                    "framing \(request.head.framing) but the forwarded head is \(request.forwarded.debugDescription)")
        } catch {
            // refusing the request is fine too
        }
    }
}
