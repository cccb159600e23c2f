import NIOCore
@testable import TealProxy
import Testing

/// Passes `parts` of a body through a tracker the way the proxy does (`BodyTracker.forward`) and
/// returns the bytes it would send on, or `nil` when the body is refused.
func forwardedBody(_ parts: [[UInt8]], framing: BodyFraming = .chunked) -> (bytes: [UInt8], done: Bool, left: Int)? {
    var tracker = BodyTracker(framing)
    var out: [UInt8] = []
    var left = 0
    for part in parts {
        var buffer = ByteBuffer(bytes: part)
        do {
            try tracker.forward(&buffer) { out += Array(buffer: $0) }
        } catch {
            return nil
        }
        left += buffer.readableBytes
    }
    return (out, tracker.isDone, left)
}

/// The classes of ambiguous framing that must be refused or rewritten canonically, each in the
/// direction clients to instances (400) and instances to clients (502, as a parse failure).
@Suite struct FramingHardeningTests {
    // MARK: 1. Transfer-Encoding that is not exactly one chunked

    @Test(arguments: [
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", RequestHeadError.transferEncodingInvalid),
        ("Transfer-Encoding: chunked, chunked", .transferEncodingInvalid),
        ("Transfer-Encoding: ,chunked", .transferEncodingInvalid),
        ("Transfer-Encoding: chunked,", .transferEncodingInvalid),
        ("Transfer-Encoding: chunked, ,", .transferEncodingInvalid),
        ("Transfer-Encoding: identity, chunked", .transferCodingNotImplemented),
        ("Transfer-Encoding: gzip, chunked", .transferCodingNotImplemented),
        ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", .transferCodingNotImplemented),
        ("Transfer-Encoding: chunked, identity", .transferEncodingNotChunked),
        ("Transfer-Encoding: chunked;q=1", .transferEncodingNotChunked),
        ("Transfer-Encoding: \"chunked\"", .transferEncodingNotChunked),
    ])
    func requestTransferEncodingOtherThanOneChunkedIsRefused(lines: String, error: RequestHeadError) {
        #expect(HeadFixture.requestError(HeadFixture.post(lines)) == error)
        #expect(error.status == (error == .transferCodingNotImplemented ? 501 : 400))
    }

    @Test(arguments: ["chunked", "Chunked", "CHUNKED", "  chunked  ", "cHuNkEd"])
    func requestChunkedGoesOnAsOneCanonicalLine(value: String) throws {
        let request = try HeadFixture.request(HeadFixture.post("Transfer-Encoding: \(value)", "X-After: 1"))
        #expect(request.head.framing == .chunked)
        let forwarded = request.forwarded
        #expect(forwarded.components(separatedBy: "Transfer-Encoding").count == 2, "\(forwarded.debugDescription)")
        #expect(forwarded.contains("\r\nTransfer-Encoding: chunked\r\n"))
    }

    @Test(arguments: [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: ,chunked",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked, gzip",
    ])
    func responseTransferEncodingOtherThanOneChunkedIsRefused(lines: String) {
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\n\(lines)\r\n\r\n") != nil)
        // Even where the answer has no body, the field is what the client reads.
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\n\(lines)\r\n\r\n", requestIsHead: true) != nil)
    }

    @Test func responseChunkedInHTTP10IsRefused() {
        #expect(HeadFixture.responseError("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == .transferEncodingInHTTP10)
    }

    @Test func responseChunkedGoesOnAsOneCanonicalLine() throws {
        let response = try HeadFixture.response("HTTP/1.1 200 OK\r\nTransfer-Encoding:  CHUNKED \r\nX-A: 1\r\n\r\n")
        #expect(response.head.framing == .chunked)
        #expect(response.forwarded == "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    }

    // MARK: 2. Chunk lines

    @Test(arguments: [
        ("5;name=value\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        ("5 ;a\r\nhello\r\n0;b=\"x;y\\\"z\"\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        ("005\r\nhello\r\n000\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        ("A\r\n0123456789\r\n0\r\n\r\n", "a\r\n0123456789\r\n0\r\n\r\n"),
        ("1a\r\n" + String(repeating: "z", count: 26) + "\r\n0\r\n\r\n", "1a\r\n" + String(repeating: "z", count: 26) + "\r\n0\r\n\r\n"),
        ("0\r\n\r\n", "0\r\n\r\n"),
    ])
    func chunkLinesAreWrittenCanonically(body: String, canonical: String) throws {
        let bytes = Array(body.utf8)
        let whole = try #require(forwardedBody([bytes]))
        #expect(String(decoding: whole.bytes, as: UTF8.self) == canonical)
        #expect(whole.done && whole.left == 0)
        // The same output however the body is split across reads.
        for split in 0...bytes.count {
            let parts = forwardedBody([Array(bytes[..<split]), Array(bytes[split...])])
            #expect(parts.map { String(decoding: $0.bytes, as: UTF8.self) } == canonical, "split at \(split)")
        }
    }

    @Test(arguments: [
        "5 \r\nhello\r\n0\r\n\r\n",          // trailing space, no extension
        "5\t\r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",          // extension without a name
        "5; \r\nhello\r\n0\r\n\r\n",
        "5;=x\r\nhello\r\n0\r\n\r\n",
        "5;a=\r\nhello\r\n0\r\n\r\n",        // name and = without a value
        "5;a=\"x\r\nhello\r\n0\r\n\r\n",     // unbalanced quote
        "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",  // garbage after a quoted value
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b \r\nhello\r\n0\r\n\r\n",
        "5 x\r\nhello\r\n0\r\n\r\n",         // garbage after the size
        "5x\r\nhello\r\n0\r\n\r\n",
        "5;a=b,c\r\nhello\r\n0\r\n\r\n",
        "5;a@b\r\nhello\r\n0\r\n\r\n",
    ])
    func malformedChunkLinesAreRefused(body: String) {
        let bytes = Array(body.utf8)
        #expect(forwardedBody([bytes]) == nil, "\(body.debugDescription)")
        #expect(forwardedBody(bytes.map { [$0] }) == nil, "\(body.debugDescription) byte by byte")
    }

    @Test func canonicalBodiesGoOnAsOneSliceOfTheInput() {
        let body = Array("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n".utf8)
        var tracker = BodyTracker(.chunked)
        var buffer = ByteBuffer(bytes: body + Array("GET / HTTP/1.1\r\n".utf8))
        var writes: [ByteBuffer] = []
        #expect(throws: Never.self) { try tracker.forward(&buffer) { writes.append($0) } }
        #expect(writes.count == 1)
        #expect(writes.first.map { Array(buffer: $0) } == body)
        #expect(tracker.isDone)
        #expect(String(buffer: buffer) == "GET / HTTP/1.1\r\n")
    }

    // MARK: 3. Trailer sections

    @Test(arguments: [
        "0\r\nX-A: 1\r\n folded\r\n\r\n",  // obs-fold
        "0\r\nno colon here\r\n\r\n",
        "0\r\n: empty name\r\n\r\n",
        "0\r\nX A: 1\r\n\r\n",
        "0\r\nX-A : 1\r\n\r\n",
        "0\r\n\tX-A: 1\r\n\r\n",
    ])
    func malformedTrailerLinesAreRefused(body: String) {
        #expect(forwardedBody([Array(body.utf8)]) == nil, "\(body.debugDescription)")
    }

    @Test func trailerFieldsThatFrameOrRouteAreLeftOut() throws {
        let body = "0\r\nX-Checksum: abc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n"
            + "Content_Length: 7\r\nConnection: close\r\nTrailer: x\r\nGrpc-Status: 0\r\n\r\n"
        let bytes = Array(body.utf8)
        for split in [0, 3, 10, 30, bytes.count - 1] {
            let result = try #require(forwardedBody([Array(bytes[..<split]), Array(bytes[split...])]))
            #expect(String(decoding: result.bytes, as: UTF8.self) == "0\r\nX-Checksum: abc\r\nGrpc-Status: 0\r\n\r\n")
            #expect(result.done)
        }
    }

    // MARK: 5. Lenient number forms and underscore spellings

    @Test func requestContentLengthWithLeadingZerosGoesOnCanonically() throws {
        let request = try HeadFixture.request(HeadFixture.post("Content-Length: 0004"))
        #expect(request.head.framing == .length(4))
        #expect(request.forwarded.contains("\r\nContent-Length: 4\r\n"))
        #expect(!request.forwarded.contains("0004"))
        let zero = try HeadFixture.request(HeadFixture.post("Content-Length: 000"))
        #expect(zero.forwarded.contains("\r\nContent-Length: 0\r\n"))
    }

    @Test func responseContentLengthWithLeadingZerosGoesOnCanonically() throws {
        let response = try HeadFixture.response("HTTP/1.1 200 OK\r\nContent-Length: 0004\r\n\r\n")
        #expect(response.head.framing == .length(4))
        #expect(response.forwarded == "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    }

    @Test(arguments: ["Content_Length: 5", "Transfer_Encoding: chunked", "X_Forwarded_For: 1.2.3.4", "x_forwarded_host: evil",
                      "Content_length: 0", "Keep_Alive: x", "Proxy_Connection: x", "X_Forwarded_Proto: https", "X_Request_Id: abc"])
    func underscoreSpellingsOfFramingAndRoutingFieldsAreDropped(line: String) throws {
        let request = try HeadFixture.request(HeadFixture.get(line, "X_Other_Thing: kept"))
        let name = String(line.prefix { $0 != ":" })
        #expect(!request.forwarded.contains(name), "\(request.forwarded.debugDescription)")
        #expect(request.forwarded.contains("X_Other_Thing: kept"))
        let response = try HeadFixture.response("HTTP/1.1 200 OK\r\n\(line)\r\nContent-Length: 0\r\n\r\n")
        #expect(!response.forwarded.contains(name))
    }

    // MARK: Found by the differential run against h11

    @Test(arguments: ["GET /caf\u{E9} HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD http://h?\u{80}q HTTP/1.0\r\nHost: h:8080\r\n\r\n"])
    func nonASCIIRequestTargetsAreRefused(head: String) {
        #expect(HeadFixture.requestError(head) == .badRequestLine)
    }

    @Test(arguments: ["HTTP/1.1 100 Contin\u{0B}ue\r\n\r\n", "HTTP/1.1 200 O\u{0}K\r\nContent-Length: 0\r\n\r\n",
                      "HTTP/1.1 200 OK\u{7F}\r\nContent-Length: 0\r\n\r\n"])
    func controlCharactersInReasonPhrasesAreRefused(head: String) {
        #expect(HeadFixture.responseError(head) == .badRequestLine)
    }

    @Test func reasonPhrasesMayCarryObsText() throws {
        #expect(try HeadFixture.response("HTTP/1.1 200 Gr\u{FC}\u{DF}e\t!\r\nContent-Length: 0\r\n\r\n").head.status == 200)
    }

    @Test func noFramingFieldsOnInterimOr204Answers() throws {
        for framing in ["Content-Length: 0", "Transfer-Encoding: chunked"] {
            let noContent = try HeadFixture.response("HTTP/1.1 204 No Content\r\n\(framing)\r\nX-A: 1\r\n\r\n")
            #expect(noContent.forwarded == "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
        }
        let interim = try HeadFixture.response("HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nLink: </a>\r\n\r\n")
        #expect(interim.forwarded == "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        let notModified = try HeadFixture.response("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(notModified.forwarded == "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
    }

    // MARK: 6. Where the authority comes from

    @Test func absoluteFormTargetReplacesHostAndGoesOnInOriginForm() throws {
        let request = try HeadFixture.request("GET http://right.example:8080/a/b?c HTTP/1.1\r\nHost: wrong.example\r\nAccept: */*\r\n\r\n")
        let forwarded = request.forwarded
        #expect(forwarded.hasPrefix("GET /a/b?c HTTP/1.1\r\nAccept: */*\r\nHost: right.example:8080\r\n"), "\(forwarded.debugDescription)")
        #expect(!forwarded.contains("wrong.example"))
        #expect(forwarded.contains("X-Forwarded-Host: right.example:8080\r\n"))
        #expect(try HeadFixture.request("GET http://h HTTP/1.1\r\nHost: x\r\n\r\n").forwarded.hasPrefix("GET / HTTP/1.1\r\n"))
        #expect(try HeadFixture.request("GET http://h?q=1 HTTP/1.1\r\nHost: x\r\n\r\n").forwarded.hasPrefix("GET /?q=1 HTTP/1.1\r\n"))
        #expect(try HeadFixture.request("OPTIONS http://h:81 HTTP/1.1\r\nHost: x\r\n\r\n").forwarded.hasPrefix("OPTIONS * HTTP/1.1\r\n"))
    }

    @Test(arguments: [
        ("GET http://user@h/p HTTP/1.1\r\nHost: h\r\n\r\n", RequestHeadError.userinfoInTarget),
        ("GET http://user:pw@h/p HTTP/1.1\r\nHost: h\r\n\r\n", .userinfoInTarget),
        ("GET http://@h/p HTTP/1.1\r\nHost: h\r\n\r\n", .userinfoInTarget),
        ("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", .invalidTargetAuthority),
        ("GET http://h\"x/p HTTP/1.1\r\nHost: h\r\n\r\n", .invalidTargetAuthority),
    ])
    func badTargetAuthoritiesAreRefused(head: String, error: RequestHeadError) {
        #expect(HeadFixture.requestError(head) == error)
    }

    @Test(arguments: ["h2c", "H2C", "websocket, h2c"])
    func h2cUpgradesAreLeftOut(upgrade: String) throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: Upgrade, HTTP2-Settings", "Upgrade: \(upgrade)",
                                                              "HTTP2-Settings: AAMAAABkAAQAAP__"))
        #expect(!request.head.wantsUpgrade)
        let forwarded = request.forwarded.lowercased()
        #expect(!forwarded.contains("upgrade"), "\(forwarded.debugDescription)")
        #expect(!forwarded.contains("http2-settings"))
    }

    @Test func webSocketUpgradesStillGoOn() throws {
        let request = try HeadFixture.request(HeadFixture.get("Connection: Upgrade", "Upgrade: websocket"))
        #expect(request.head.wantsUpgrade)
        #expect(request.forwarded.contains("Connection: upgrade\r\nUpgrade: websocket\r\n"))
    }
}
