import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import TealProxy

@Suite("HTTP/2 stream bridge")
struct HTTP2StreamBridgeTests {
    func readAll(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    @Test("a request without content-length becomes chunked HTTP/1.1; one with it is passed as is; hop-by-hop headers go")
    func requests() throws {
        let channel = EmbeddedChannel(handler: HTTP2StreamBridge())
        var head = HTTPRequestHead(version: .http2, method: .POST, uri: "/upload?x=1")
        head.headers.add(name: "host", value: "shop.test")
        head.headers.add(name: "te", value: "trailers")
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        #expect(try readAll(channel) == "", "the head waits for the next part")
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "hello")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try readAll(channel) == "POST /upload?x=1 HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

        var get = HTTPRequestHead(version: .http2, method: .GET, uri: "/")
        get.headers.add(name: "host", value: "shop.test")
        try channel.writeInbound(HTTPServerRequestPart.head(get))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try readAll(channel) == "GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n")

        var sized = HTTPRequestHead(version: .http2, method: .PUT, uri: "/x")
        sized.headers.add(name: "content-length", value: "3")
        try channel.writeInbound(HTTPServerRequestPart.head(sized))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "abc")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try readAll(channel) == "PUT /x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc")
    }

    func parts(_ channel: EmbeddedChannel) throws -> [String] {
        var parts: [String] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head(let head): parts.append("head \(head.status.code) \(head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ","))")
            case .body(.byteBuffer(let body)): parts.append("body \(String(buffer: body))")
            case .body: parts.append("body ?")
            case .end: parts.append("end")
            }
        }
        return parts
    }

    @Test("answers: split across writes, chunked bodies decoded, interim answers dropped, framing headers removed, close-delimited bodies end the stream")
    func answers() throws {
        let channel = EmbeddedChannel(handler: HTTP2StreamBridge())
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http2, method: .GET, uri: "/")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        _ = try readAll(channel)
        try channel.writeOutbound(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-"))
        #expect(try parts(channel) == [])
        try channel.writeOutbound(ByteBuffer(string: "Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhel"))
        try channel.writeOutbound(ByteBuffer(string: "lo\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"))
        let decoded = try parts(channel)
        #expect(decoded == ["head 200 X-A=1", "body hel", "body loabc", "end"], "\(decoded)")

        let untilClose = EmbeddedChannel(handler: HTTP2StreamBridge())
        try untilClose.writeOutbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nX-B: 2\r\n\r\npartial"))
        #expect(try parts(untilClose) == ["head 200 X-B=2", "body partial"])
        _ = untilClose.close(mode: .all)
        #expect(try parts(untilClose) == ["end"])

        let head = EmbeddedChannel(handler: HTTP2StreamBridge())
        try head.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http2, method: .HEAD, uri: "/")))
        try head.writeInbound(HTTPServerRequestPart.end(nil))
        try head.writeOutbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
        #expect(try parts(head) == ["head 200 Content-Length=5", "end"])
    }
}
