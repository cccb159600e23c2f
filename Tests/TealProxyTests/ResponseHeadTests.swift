@testable import TealProxy
import Testing

@Suite struct ResponseHeadTests {
    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200),
        ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404),
        ("HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n", 503),
        ("HTTP/1.1 201\r\nContent-Length: 0\r\n\r\n", 201),
        ("HTTP/1.0 302 Found\r\n\r\n", 302),
        ("HTTP/1.1 599 Odd\r\n\r\n", 599),
        ("HTTP/1.1 100 Continue\r\n\r\n", 100),
    ])
    func parsesStatus(head: String, status: Int) throws {
        let response = try HeadFixture.response(head)
        #expect(response.head.status == status)
        #expect(response.head.statusStart == 9)
    }

    @Test func parsesAFullHead() throws {
        let response = try HeadFixture.response(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nX-Backend: blue-1\r\n\r\n")
        #expect(response.head.status == 200)
        #expect(response.head.isHTTP11)
        #expect(response.head.framing == .length(12))
        #expect(response.head.upstreamKeepAlive)
        #expect(!response.head.isInterim)
        #expect(response.keptHeaders == "Content-Type: text/plain\r\nContent-Length: 12\r\nX-Backend: blue-1\r\n")
    }

    @Test(arguments: [
        // status and request method rules first
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, BodyFraming.none),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, .none),
        ("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, .none),
        ("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, .none),
        ("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, .none),
        ("HTTP/1.1 100 Continue\r\n\r\n", false, .none),
        ("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, .none),
        ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false, .none),
        // then framing headers
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, .chunked),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, .length(5)),
        ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, .none),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, .length(5)),
        ("HTTP/1.1 200 OK\r\n\r\n", false, .untilClose),
        ("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", false, .untilClose),
        ("HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\n", false, .length(3)),
    ])
    func framing(head: String, requestIsHead: Bool, framing: BodyFraming) throws {
        let response = try HeadFixture.response(head, requestIsHead: requestIsHead)
        #expect(response.head.framing == framing)
    }

    @Test func interimResponses() throws {
        #expect(try HeadFixture.response("HTTP/1.1 100 Continue\r\n\r\n").head.isInterim)
        #expect(try HeadFixture.response("HTTP/1.1 103 Early Hints\r\n\r\n").head.isInterim)
        #expect(try !HeadFixture.response("HTTP/1.1 101 Switching Protocols\r\n\r\n").head.isInterim)
        #expect(try !HeadFixture.response("HTTP/1.1 200 OK\r\n\r\n").head.isInterim)
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
        ("HTTP/1.1 204 No Content\r\n\r\n", true),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", false),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive, Close\r\n\r\n", false),
        ("HTTP/1.1 200 OK\r\n\r\n", false),  // body runs until close
        ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n", true),
        ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
        ("HTTP/1.0 204 No Content\r\n\r\n", false),
    ])
    func upstreamKeepAlive(head: String, keepAlive: Bool) throws {
        let response = try HeadFixture.response(head)
        #expect(response.head.upstreamKeepAlive == keepAlive)
    }

    @Test func headResponseKeepsTheConnection() throws {
        let response = try HeadFixture.response("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", requestIsHead: true)
        #expect(response.head.framing == .none)
        #expect(response.head.upstreamKeepAlive)
        #expect(response.keptHeaders == "Content-Length: 500\r\n")
    }

    @Test(arguments: [
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 000 Zero\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.2 200 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    ])
    func invalidHeadsThrow(head: String) {
        #expect(HeadFixture.responseError(head) != nil, "\(head.debugDescription)")
    }

    @Test func statusLineErrorsAreBadStatusLines() {
        #expect(HeadFixture.responseError("HTTP/1.1 2x0 OK\r\n\r\n") == .badRequestLine)
        #expect(HeadFixture.responseError("HTTP/3.0 200 OK\r\n\r\n") == .badRequestLine)
    }

    @Test func conflictingContentLengthsThrow() {
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == .invalidContentLength)
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n") == .invalidContentLength)
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n") == .invalidContentLength)
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n") == .invalidContentLength)
    }

    @Test func identicalDuplicateContentLengthIsAcceptedOnceForwarded() throws {
        let response = try HeadFixture.response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\ncontent-length: 5\r\n\r\n")
        #expect(response.head.framing == .length(5))
        #expect(response.keptHeaders == "Content-Length: 5\r\nX: y\r\n")
    }

    @Test func contentLengthWithTransferEncodingThrows() {
        #expect(HeadFixture.responseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            == .contentLengthWithTransferEncoding)
    }

    @Test func hopByHopHeadersAreDropped() throws {
        let response = try HeadFixture.response(
            "HTTP/1.1 200 OK\r\n"
                + "Connection: keep-alive, X-Hop\r\n"
                + "Keep-Alive: timeout=5\r\n"
                + "Content-Length: 2\r\n"
                + "TE: trailers\r\n"
                + "Proxy-Connection: keep-alive\r\n"
                + "x-hop: secret\r\n"
                + "Upgrade: h2c\r\n"
                + "Set-Cookie: a=b\r\n"
                + "\r\n")
        #expect(response.keptHeaders == "Content-Length: 2\r\nSet-Cookie: a=b\r\n")
        #expect(response.head.upstreamKeepAlive)
    }

    @Test func switchingProtocolsKeepsConnectionAndUpgrade() throws {
        let response = try HeadFixture.response(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: k\r\n\r\n")
        #expect(response.head.status == 101)
        #expect(response.keptHeaders == "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: k\r\n")
    }

    /// Same rule as for requests: the proxy frames the response body by Content-Length or chunked
    /// and forwards it on a keep-alive client connection; if an upstream's `Connection:
    /// content-length` removed that line, the client could not find the end of the body. Either
    /// refusing the response or keeping the line is correct.
    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n", "Content-Length: 5\r\n"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n", "Transfer-Encoding: chunked\r\n"),
    ])
    func connectionOptionsNeverRemoveBodyFraming(head: String, framingLine: String) {
        do {
            let response = try HeadFixture.response(head)
            #expect(response.forwarded.contains(framingLine),
                    "framing \(response.head.framing) but the forwarded head is \(response.forwarded.debugDescription)")
        } catch {
            // refusing the response is fine too
        }
    }
}
