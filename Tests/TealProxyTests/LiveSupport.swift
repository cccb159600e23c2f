import Foundation
import NIOCore
import NIOPosix
import TealCore
import TealProxy
import TealServer
import TealTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A response read off a raw connection.
struct RawResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

enum RawError: Error { case connect(Int32), closed, timeout, malformed(String) }

/// A blocking TCP client on loopback that writes exactly the bytes it is given and parses what
/// comes back: for malformed requests, pipelining and other things HTTP clients will not send.
final class RawConnection {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int, timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(fd)
            throw RawError.connect(error)
        }
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw RawError.closed }
            offset += sent
        }
    }

    /// Reads more bytes into `pending`; false when the peer closed.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { return false }
        if count < 0 { throw errno == EAGAIN || errno == EWOULDBLOCK ? RawError.timeout : RawError.closed }
        pending += chunk[0..<count]
        return true
    }

    /// Reads one response (interim 1xx responses are returned as responses too).
    func readResponse(requestWasHead: Bool = false) throws -> RawResponse {
        var headEnd: Int?
        while headEnd == nil {
            headEnd = Self.find([13, 10, 13, 10], in: pending).map { $0 + 4 }
            if headEnd == nil { guard try fill() else { throw RawError.closed } }
        }
        let headText = String(decoding: pending[0..<headEnd!], as: UTF8.self)
        pending.removeFirst(headEnd!)
        var lines = headText.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw RawError.malformed(statusLine) }
        let headers = lines.map { line -> (name: String, value: String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = RawResponse(status: status, headers: headers, body: [])
        if requestWasHead || status < 200 || status == 204 || status == 304 { return response }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            while pending.count < length { guard try fill() else { throw RawError.closed } }
            response.body = Array(pending[0..<length])
            pending.removeFirst(length)
        } else if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            response.body = try readChunked()
        } else {
            while try fill() {}
            response.body = pending
            pending = []
        }
        return response
    }

    private func readChunked() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            var lineEnd = Self.find([13, 10], in: pending)
            while lineEnd == nil { guard try fill() else { throw RawError.closed }; lineEnd = Self.find([13, 10], in: pending) }
            let sizeText = String(decoding: pending[0..<lineEnd!], as: UTF8.self).split(separator: ";")[0]
            guard let size = Int(sizeText, radix: 16) else { throw RawError.malformed(String(sizeText)) }
            pending.removeFirst(lineEnd! + 2)
            if size == 0 {
                var end = Self.find([13, 10], in: pending)
                while end == nil { guard try fill() else { throw RawError.closed }; end = Self.find([13, 10], in: pending) }
                pending.removeFirst(end! + 2)
                return body
            }
            while pending.count < size + 2 { guard try fill() else { throw RawError.closed } }
            body += pending[0..<size]
            pending.removeFirst(size + 2)
        }
    }

    /// Reads a response head only (the body is left unread).
    func readHeadOnly() throws -> RawResponse {
        try readResponse(requestWasHead: true)
    }

    /// Reads and drops up to `limit` body bytes; returns how many.
    func discard(upTo limit: Int) throws -> Int {
        if pending.isEmpty { guard try fill() else { throw RawError.closed } }
        let count = min(limit, pending.count)
        pending.removeFirst(count)
        return count
    }

    /// Whether the peer closes the connection (reading nothing more) within the timeout.
    func closesConnection() -> Bool {
        while true {
            do {
                if try !fill() { return true }
            } catch RawError.closed {
                return true
            } catch {
                return false
            }
        }
    }

    /// Reads every byte until the peer closes or the read times out.
    func readRest() -> [UInt8] {
        while (try? fill()) == true {}
        defer { pending = [] }
        return pending
    }

    /// Reads raw bytes until at least `count` are there.
    func readBytes(_ count: Int) throws -> [UInt8] {
        while pending.count < count { guard try fill() else { throw RawError.closed } }
        let bytes = Array(pending[0..<count])
        pending.removeFirst(count)
        return bytes
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}

/// Demo backends and a router on loopback, all on port 0.
final class LiveFixture: @unchecked Sendable {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    let blue: [DemoBackend]
    let green: [DemoBackend]
    let router: TealRouter
    let port: Int
    private var healthTask: Task<Void, any Error>?

    /// Starts `blueNames.count` blue and `greenNames.count` green backends and a router with one
    /// default route over them; `edit` may change the route, `configure` the proxy.
    static func start(blue blueNames: [String] = ["blue-1"], green greenNames: [String] = [], split: Split = .allBlue,
                      backendOptions: (inout DemoBackend.Options) -> Void = { _ in },
                      edit: (inout Route) -> Void = { _ in },
                      configure: (inout ProxyConfiguration) -> Void = { _ in },
                      activeHealthChecks: Bool = false) async throws -> LiveFixture {
        func backends(_ names: [String]) async throws -> [DemoBackend] {
            var result: [DemoBackend] = []
            for name in names {
                var options = DemoBackend.Options(name: name)
                backendOptions(&options)
                let backend = DemoBackend(options: options, group: group)
                try await backend.start()
                result.append(backend)
            }
            return result
        }
        let blue = try await backends(blueNames)
        let green = try await backends(greenNames)
        func addresses(_ list: [DemoBackend]) -> [InstanceAddress] {
            list.map { InstanceAddress(host: "127.0.0.1", port: $0.port!) }
        }
        var route = Route(name: "live", blue: PoolSpec(version: "1", instances: addresses(blue)),
                          green: greenNames.isEmpty ? nil : PoolSpec(version: "2", instances: addresses(green)),
                          split: split)
        route.health.enabled = activeHealthChecks
        edit(&route)
        var configuration = ProxyConfiguration()
        configuration.listenPort = 0
        configuration.drainTimeout = .seconds(2)
        configure(&configuration)
        let router = TealRouter(routes: [route], configuration: configuration, group: group)
        let address = try await router.start()
        let fixture = LiveFixture(blue: blue, green: green, router: router, port: address.port!)
        if activeHealthChecks {
            let checker = router.healthChecker
            fixture.healthTask = Task { try await checker.run() }
        }
        return fixture
    }

    private init(blue: [DemoBackend], green: [DemoBackend], router: TealRouter, port: Int) {
        self.blue = blue
        self.green = green
        self.router = router
        self.port = port
    }

    func connect(timeout: Double = 10) throws -> RawConnection {
        try RawConnection(port: port, timeout: timeout)
    }

    /// One request on a new connection.
    func get(_ path: String = "/", headers: String = "") throws -> RawResponse {
        let connection = try connect()
        try connection.send("GET \(path) HTTP/1.1\r\nHost: test.local\r\n\(headers)\r\n")
        return try connection.readResponse()
    }

    func stop() async {
        healthTask?.cancel()
        await router.shutdown()
        for backend in blue + green { await backend.stop() }
    }
}

/// A port on loopback that refuses connections: bound to get a free number, then closed.
func refusedPort() throws -> Int { try freePort() }

/// A fake upstream that answers every read with fixed bytes (valid or not), and optionally closes.
final class CannedUpstream: @unchecked Sendable {
    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let reply: String
        let close: Bool
        init(reply: String, close: Bool) { self.reply = reply; self.close = close }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = context.channel.allocator.buffer(string: reply)
            let close = self.close
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in if close { bound.value.close(promise: nil) } }
        }
    }

    let channel: any Channel
    var address: InstanceAddress { InstanceAddress(host: "127.0.0.1", port: channel.localAddress!.port!) }

    init(reply: String, close: Bool = true) async throws {
        channel = try await ServerBootstrap(group: LiveFixture.group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Handler(reply: reply, close: close)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async { try? await channel.close() }
}
