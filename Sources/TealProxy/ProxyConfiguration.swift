import NIOCore

/// Settings of the data plane that are not per route. Every value has a default.
public struct ProxyConfiguration: Sendable {
    /// Address the proxy listens on.
    public var listenHost = "127.0.0.1"
    /// Port the proxy listens on; 0 picks a free one (see `ProxyServer.localAddress`).
    public var listenPort = 8080
    /// Address of the HTTPS listener (with `ProxyServer.tls`).
    public var tlsListenHost = "127.0.0.1"
    /// Port of the HTTPS listener; `nil`: none. 0 picks a free one (`ProxyServer.tlsLocalAddress`).
    public var tlsListenPort: Int?
    /// Request head limits (431/414 beyond).
    public var headLimits = HeadLimits()
    /// Time a client has to send a complete request head once it started one (408 after).
    public var headerReadTimeout: TimeAmount = .seconds(10)
    /// Time a keep-alive client connection may sit idle between requests.
    public var clientIdleTimeout: TimeAmount = .seconds(60)
    /// Most client connections open at once; new ones beyond are closed at accept.
    public var maxConnections = 10_000
    /// Idle upstream connections kept per instance and event loop. High, because each
    /// concurrent request needs a connection of its own (HTTP/1.1 upstream) and a few HTTP/2
    /// clients can have hundreds of streams in flight: a low cap closes connections after every
    /// burst only to open them again for the next (64 here cost HTTP/2 a third of its
    /// throughput in `benchmarks/tls.sh`). Idle ones still close after `upstreamIdleTimeout`.
    public var maxIdlePerInstance = 1024
    /// How long an idle upstream connection is kept. Shorter than common upstream keep-alive
    /// timeouts (Node.js: 5 s) so Teal closes first and rarely writes to a connection the
    /// upstream is closing.
    public var upstreamIdleTimeout: TimeAmount = .seconds(4)
    /// How long shutdown waits for in-flight requests before closing connections.
    public var drainTimeout: TimeAmount = .seconds(30)
    /// At shutdown, an idle keep-alive connection is closed after this long rather than at once,
    /// so a client that is about to send its next request gets an answer (with
    /// `Connection: close`) instead of a connection closed under it.
    public var drainIdleGrace: TimeAmount = .milliseconds(500)
    /// At shutdown, how long the listener keeps accepting what is already queued for it before
    /// it closes (a successor steering new connections to itself makes that queue run dry).
    public var acceptLinger: TimeAmount = .milliseconds(250)
    /// HTTP/2 on the HTTPS listener (ALPN `h2`, else HTTP/1.1).
    public var http2 = HTTP2Limits()
    /// Take over from a running Teal on the same port: bind with SO_REUSEPORT (always set) and
    /// steer every new connection of the port's reuse-port group to this listener.
    public var steerNewConnections = false
    /// The `Via` pseudonym.
    public var viaName = "teal"

    public init() {}
}

/// Limits of HTTP/2 client connections.
public struct HTTP2Limits: Sendable {
    /// Offer `h2` in ALPN; off: HTTPS clients speak HTTP/1.1.
    public var enabled = true
    /// Accept cleartext HTTP/2 with prior knowledge (h2c) on the plain listener: a connection
    /// that opens with the HTTP/2 preface speaks HTTP/2, any other HTTP/1.1.
    public var cleartext = false
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams = 100
    /// Largest header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE), in bytes. 16 KiB
    /// is also what NIOHTTP2's decoder enforces until the client acknowledges Teal's settings,
    /// which covers every request a client sends in its first flight: a larger value would be
    /// advertised but not hold for those. A larger list cannot be decoded and skipped (HPACK
    /// state is shared by the connection), so NIOHTTP2 ends the connection with GOAWAY
    /// COMPRESSION_ERROR.
    public var maxHeaderListSize = 16 * 1024
    /// Receive windows: per stream (SETTINGS_INITIAL_WINDOW_SIZE) and per connection.
    public var streamWindow = 1 << 20
    public var connectionWindow = 4 << 20
    /// Rapid-reset defence (CVE-2023-44487): a client that resets more than this many streams
    /// within `resetWindow` is sent GOAWAY and disconnected.
    public var maxResets = 100
    public var resetWindow: TimeAmount = .seconds(10)

    public init() {}
}
