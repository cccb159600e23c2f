import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TealCore
@testable import TealProxy
import Testing

/// An instance on loopback that keeps every byte it receives, per connection, and answers each
/// complete request (read in the canonical framing the proxy sends) with `reply(n)`, n counting
/// requests over all connections from 0.
final class RecordingUpstream: @unchecked Sendable {
    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let owner: RecordingUpstream
        let connection: Int
        var pending: [UInt8] = []
        init(owner: RecordingUpstream, connection: Int) { self.owner = owner; self.connection = connection }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(buffer: unwrapInboundIn(data))
            owner.received.withLockedValue { $0[connection, default: []] += bytes }
            pending += bytes
            while let length = RecordingUpstream.requestLength(pending) {
                pending.removeFirst(length)
                let index = owner.requests.withLockedValue { count in defer { count += 1 }; return count }
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: owner.reply(index))), promise: nil)
            }
        }
    }

    let reply: @Sendable (Int) -> [UInt8]
    let received = NIOLockedValueBox<[Int: [UInt8]]>([:])
    let requests = NIOLockedValueBox(0)
    private let connections = NIOLockedValueBox(0)
    private var channel: (any Channel)!
    var address: InstanceAddress { InstanceAddress(host: "127.0.0.1", port: channel.localAddress!.port!) }

    /// Everything the instance received, all connections in order of their opening.
    var allReceived: String {
        received.withLockedValue { map in map.keys.sorted().map { String(decoding: map[$0]!, as: UTF8.self) }.joined() }
    }

    init(reply: @escaping @Sendable (Int) -> [UInt8] = { _ in Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8) }) async throws {
        self.reply = reply
        channel = try await ServerBootstrap(group: LiveFixture.group)
            .childChannelInitializer { [self] channel in
                let number = self.connections.withLockedValue { count in defer { count += 1 }; return count }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(owner: self, connection: number))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async { try? await channel.close() }

    /// The length of the first complete request in `bytes` as the proxy frames it (canonical
    /// Content-Length or chunked), or nil.
    static func requestLength(_ bytes: [UInt8]) -> Int? {
        guard let headEnd = RawConnection.find([13, 10, 13, 10], in: bytes).map({ $0 + 4 }) else { return nil }
        let head = String(decoding: bytes[..<headEnd], as: UTF8.self).lowercased()
        if head.contains("\r\ntransfer-encoding: chunked\r\n") {
            var position = headEnd
            while true {
                guard let lineEnd = RawConnection.find([13, 10], in: Array(bytes[position...])).map({ $0 + position }),
                      let size = Int(String(decoding: bytes[position..<lineEnd], as: UTF8.self), radix: 16) else { return nil }
                position = lineEnd + 2
                if size == 0 {
                    // Trailer lines, up to the empty one.
                    while true {
                        guard let end = RawConnection.find([13, 10], in: Array(bytes[position...])).map({ $0 + position }) else { return nil }
                        let empty = end == position
                        position = end + 2
                        if empty { return position }
                    }
                }
                position += size + 2
                if position > bytes.count { return nil }
            }
        }
        if let range = head.range(of: "\r\ncontent-length: "),
           let length = Int(head[range.upperBound...].prefix { $0.isNumber }) {
            return headEnd + length <= bytes.count ? headEnd + length : nil
        }
        return headEnd
    }
}

/// The framing classes of issue 14 end to end: real sockets, the bytes that reached the instance
/// or the client asserted.
@Suite("Live framing hardening", .serialized) struct LiveFramingTests {
    private func withProxy(_ upstream: InstanceAddress, _ body: (LiveFixture) async throws -> Void) async throws {
        let fixture = try await LiveFixture.start(edit: { $0.blue.instances = [upstream] })
        do {
            try await body(fixture)
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }

    @Test("requests: chunked twice and codings before chunked are refused; what reaches the instance is one canonical chunked body")
    func requestTransferEncoding() async throws {
        let instance = try await RecordingUpstream()
        try await withProxy(instance.address) { fixture in
            for (lines, status) in [("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
                                    ("Transfer-Encoding: ,chunked", 400), ("Transfer-Encoding: gzip, chunked", 501)] {
                let connection = try fixture.connect()
                try connection.send("POST / HTTP/1.1\r\nHost: a\r\n\(lines)\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                #expect(try connection.readResponse().status == status, "\(lines)")
            }
            #expect(instance.allReceived.isEmpty)
            let connection = try fixture.connect()
            try connection.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED\r\n\r\n"
                                + "5;ext=\"quoted;value\"\r\nhello\r\n006\r\n world\r\n0\r\nX-Sum: 1\r\nContent-Length: 99\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            let received = instance.allReceived
            #expect(received.components(separatedBy: "Transfer-Encoding").count == 2)
            #expect(received.contains("\r\nTransfer-Encoding: chunked\r\n"))
            #expect(received.hasSuffix("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"), "\(received.debugDescription)")
        }
        await instance.stop()
    }

    @Test("requests: malformed chunk lines and trailer lines get 400, and their bytes never reach the instance")
    func requestChunkLinesAndTrailers() async throws {
        let instance = try await RecordingUpstream()
        try await withProxy(instance.address) { fixture in
            for bad in ["5 \r\nhello\r\n0\r\n\r\n", "5;\r\nhello\r\n0\r\n\r\n", "5;a=\"x\r\nhello\r\n0\r\n\r\n",
                        "5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n", "5\r\nhello\r\n0\r\nno colon\r\n\r\n"] {
                let connection = try fixture.connect()
                try connection.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + bad)
                let response = try connection.readResponse()
                #expect(response.status == 400, "\(bad.debugDescription)")
                #expect(response.header("X-Teal-Error") == "invalid-chunked-body")
            }
            let received = instance.allReceived
            for fragment in ["5 \r\n", "5;\r\n", "\"x", "folded", "no colon"] {
                #expect(!received.contains(fragment), "\(fragment.debugDescription) reached the instance")
            }
        }
        await instance.stop()
    }

    @Test("requests: Content-Length 0004, underscore spellings, absolute-form targets with another Host, userinfo and h2c upgrades")
    func requestNumbersAuthorityAndUpgrade() async throws {
        let instance = try await RecordingUpstream()
        try await withProxy(instance.address) { fixture in
            var connection = try fixture.connect()
            try connection.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0004\r\nContent_Length: 9\r\nTransfer_Encoding: chunked\r\n\r\nbody")
            #expect(try connection.readResponse().status == 200)
            var received = instance.allReceived
            #expect(received.contains("\r\nContent-Length: 4\r\n") && received.hasSuffix("\r\n\r\nbody"))
            #expect(!received.contains("0004") && !received.contains("_"), "\(received.debugDescription)")

            instance.received.withLockedValue { $0 = [:] }
            connection = try fixture.connect()
            try connection.send("GET http://right.test/p?q=1 HTTP/1.1\r\nHost: wrong.test\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            received = instance.allReceived
            #expect(received.hasPrefix("GET /p?q=1 HTTP/1.1\r\n"), "\(received.debugDescription)")
            #expect(received.contains("\r\nHost: right.test\r\n") && !received.contains("wrong.test"))

            connection = try fixture.connect()
            try connection.send("GET http://user:secret@right.test/ HTTP/1.1\r\nHost: right.test\r\n\r\n")
            let refused = try connection.readResponse()
            #expect(refused.status == 400 && refused.header("X-Teal-Error") == "userinfo-in-target")

            instance.received.withLockedValue { $0 = [:] }
            connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            received = instance.allReceived.lowercased()
            #expect(!received.contains("upgrade") && !received.contains("http2-settings") && !received.contains("h2c"))
        }
        await instance.stop()
    }

    @Test("answers: a Transfer-Encoding other than one chunked is a 502")
    func answerTransferEncoding() async throws {
        for lines in ["Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                      "Transfer-Encoding: chunked,", "Transfer-Encoding: identity"] {
            let instance = try await RecordingUpstream { _ in Array("HTTP/1.1 200 OK\r\n\(lines)\r\n\r\n5\r\nhello\r\n0\r\n\r\n".utf8) }
            try await withProxy(instance.address) { fixture in
                let response = try fixture.get()
                #expect(response.status == 502, "\(lines)")
                #expect(response.header("X-Teal-Error") == "upstream-invalid-response")
            }
            await instance.stop()
        }
    }

    @Test("answers: chunk extensions, leading zeros and forbidden trailers are rewritten before they reach the client")
    func answerChunkLines() async throws {
        let instance = try await RecordingUpstream { _ in
            Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n005;a=b\r\nhello\r\n0;x\r\nX-Sum: 1\r\nContent-Length: 9\r\nHost: evil\r\n\r\n".utf8)
        }
        try await withProxy(instance.address) { fixture in
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            let raw = String(decoding: connection.readRest(), as: UTF8.self)
            #expect(raw.hasSuffix("\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"), "\(raw.debugDescription)")
            #expect(raw.components(separatedBy: "Transfer-Encoding: chunked").count == 2)
        }
        await instance.stop()
    }

    @Test("answers: Content-Length 0004 reaches the client as 4, underscore spellings of framing fields not at all")
    func answerNumbersAndUnderscores() async throws {
        let instance = try await RecordingUpstream { _ in
            Array("HTTP/1.1 200 OK\r\nContent-Length: 0004\r\nContent_Length: 9\r\nTransfer_Encoding: chunked\r\n\r\nbody".utf8)
        }
        try await withProxy(instance.address) { fixture in
            let connection = try fixture.connect()
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            let raw = String(decoding: connection.readRest(), as: UTF8.self)
            #expect(raw.contains("\r\nContent-Length: 4\r\n") && raw.hasSuffix("\r\n\r\nbody"), "\(raw.debugDescription)")
            #expect(!raw.contains("0004") && !raw.contains("_"))
        }
        await instance.stop()
    }

    @Test("answers: a malformed chunk line cuts the answer off; its bytes never reach the client")
    func answerMalformedChunkLine() async throws {
        let instance = try await RecordingUpstream { _ in Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n".utf8) }
        try await withProxy(instance.address) { fixture in
            let connection = try fixture.connect(timeout: 5)
            try connection.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            let raw = String(decoding: connection.readRest(), as: UTF8.self)
            #expect(!raw.contains("5 x") && !raw.contains("hello"), "\(raw.debugDescription)")
        }
        await instance.stop()
    }

    /// Answers with bytes past their end, each followed by what would be a whole answer: the
    /// client must never get it, for its own next request or any other, and must get its answer
    /// without sending anything more.
    static let overruns: [(request: String, answer: String)] = [
        ("GET", "HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
        ("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
        ("GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"),
        ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nXYZ"),
    ]

    @Test("answers with bytes past their end: dropped, counted, the upstream connection closed, never another request's answer",
          arguments: overruns.indices)
    func answerOverruns(index: Int) async throws {
        let (method, answer) = Self.overruns[index]
        let smuggled = "HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\nContent-Length: 8\r\n\r\nsmuggled"
        let instance = try await RecordingUpstream { _ in Array((answer + smuggled).utf8) }
        try await withProxy(instance.address) { fixture in
            // Alone: the answer comes at once, not when the client next sends something.
            let single = try fixture.connect(timeout: 5)
            try single.send("\(method) / HTTP/1.1\r\nHost: a\r\n\r\n")
            let first = try single.readResponse(requestWasHead: method == "HEAD")
            #expect(first.header("X-Smuggled") == nil)
            // Pipelined: two requests, two real answers.
            let pipelined = try fixture.connect(timeout: 5)
            try pipelined.send("\(method) / HTTP/1.1\r\nHost: a\r\n\r\n\(method) / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            for _ in 0..<2 {
                let response = try pipelined.readResponse(requestWasHead: method == "HEAD")
                #expect(response.header("X-Smuggled") == nil && !response.text.contains("smuggled"))
                #expect(response.status == first.status)
            }
            #expect(!String(decoding: pipelined.readRest(), as: UTF8.self).contains("smuggled"))
            let upstream = try #require(fixture.router.controller.upstreams(route: "live", pool: .blue).first)
            #expect(upstream.answerOverruns.load(ordering: .relaxed) >= 3)
        }
        await instance.stop()
    }
}
