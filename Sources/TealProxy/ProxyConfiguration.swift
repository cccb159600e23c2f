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
    /// Idle upstream connections kept per instance and event loop.
    public var maxIdlePerInstance = 64
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
    /// Take over from a running Teal on the same port: bind with SO_REUSEPORT (always set) and
    /// steer every new connection of the port's reuse-port group to this listener.
    public var steerNewConnections = false
    /// The `Via` pseudonym.
    public var viaName = "teal"

    public init() {}
}
