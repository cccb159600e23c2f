import NIOCore
import NIOPosix
import TealCore

/// The result of one probe request.
public struct ProbeResult: Sendable, Hashable {
    /// The status code, when an answer came.
    public var status: Int?
    /// The body, up to `HTTPProbe.maxBody` bytes (only kept when asked for).
    public var body: String?
    /// What went wrong, when no valid answer came.
    public var failure: String?

    public init(status: Int? = nil, body: String? = nil, failure: String? = nil) {
        self.status = status
        self.body = body
        self.failure = failure
    }

    /// A short description for logs and events: `200`, `503`, `connection refused`.
    public var summary: String { status.map { "status \($0)" } ?? failure ?? "no answer" }
}

/// Sends one HTTP/1.1 request on a new connection straight to an instance (not through the
/// proxy) and reads the answer: used by active health checks and release smoke tests.
public enum HTTPProbe {
    /// The most body bytes kept.
    public static let maxBody = 64 * 1024

    /// Requests `method path` from `address` within `timeout`. Never fails: problems are in
    /// `ProbeResult.failure`.
    public static func send(method: String = "GET", path: String, to address: InstanceAddress, timeout: Duration,
                            keepBody: Bool = false, on eventLoop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let request = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nUser-Agent: teal-probe\r\nConnection: close\r\n\r\n"
        let promise = eventLoop.makePromise(of: ProbeResult.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ProbeHandler(promise: promise, keepBody: keepBody))
                }
            }
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            promise.succeed(ProbeResult(failure: "timed out after \(timeout)"))
        }
        bootstrap.connect(host: address.host, port: address.port).whenComplete { result in
            switch result {
            case .success(let channel):
                var buffer = channel.allocator.buffer(capacity: request.utf8.count)
                buffer.writeString(request)
                channel.writeAndFlush(buffer, promise: nil)
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            case .failure(let error):
                promise.succeed(ProbeResult(failure: describe(error)))
            }
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }

    static func describe(_ error: any Error) -> String {
        if case ChannelError.connectTimeout = error { return "connect timed out" }
        if let error = error as? IOError { return error.description }
        let text = "\(error)"
        return text.contains("refused") ? "connection refused" : text
    }
}

/// Collects the answer of a probe: status line, then (optionally) the body until the
/// connection closes or `maxBody` bytes.
private final class ProbeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let promise: EventLoopPromise<ProbeResult>
    private let keepBody: Bool
    private var received: ByteBuffer?
    private var done = false

    init(promise: EventLoopPromise<ProbeResult>, keepBody: Bool) {
        self.promise = promise
        self.keepBody = keepBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil { received = bytes } else { received!.writeBuffer(&bytes) }
        if !keepBody || received!.readableBytes > HTTPProbe.maxBody { finish(context: context) }
        else if let result = parse(), let head = result.headEnd, let length = result.contentLength,
                received!.readableBytes >= head + length {
            finish(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done && received == nil {
            done = true
            promise.succeed(ProbeResult(failure: HTTPProbe.describe(error)))
        }
        context.close(promise: nil)
    }

    private func parse() -> (status: Int, headEnd: Int?, contentLength: Int?)? {
        guard let received else { return nil }
        return received.withUnsafeReadableBytes { raw in
            guard raw.count >= 12, let lineEnd = raw.firstIndex(of: HTTPBytes.lf) else { return nil }
            guard let end = HTTPBytes.findHeadEnd(raw, from: 0),
                  let head = try? ResponseHead.parse(raw, headEnd: end, requestIsHead: false) else {
                let statusText = String(decoding: raw[9..<min(12, lineEnd)], as: UTF8.self)
                return Int(statusText).map { ($0, nil, nil) }
            }
            if case .length(let length) = head.framing { return (head.status, end, Int(length)) }
            return (head.status, end, head.framing == .none ? 0 : nil)
        }
    }

    private func finish(context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        guard let parsed = parse() else {
            promise.succeed(ProbeResult(failure: received == nil ? "connection closed without an answer" : "invalid HTTP answer"))
            context.close(promise: nil)
            return
        }
        var body: String?
        if keepBody, let received, let start = parsed.headEnd {
            body = received.getString(at: received.readerIndex + start, length: min(received.readableBytes - start, HTTPProbe.maxBody))
        }
        promise.succeed(ProbeResult(status: parsed.status, body: body))
        context.close(promise: nil)
    }
}
