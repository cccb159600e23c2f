import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import Logging
import TealCore

/// Settings of the admin API listener.
public struct AdminConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 9901
    /// Bearer token required on every `/v1` endpoint when set.
    public var token: String?
    /// The Alertmanager label whose value names the route a firing alert rolls back.
    public var alertRouteLabel = AdminServer.defaultRouteLabel
    /// The most connections the admin listener holds open; at the limit a new connection
    /// replaces the longest idle one (`AdminConnectionLimiter`). Kept far below the proxy's
    /// connection limit, so the admin port can never use up the descriptors the proxy needs.
    public var maxConnections = 128
    /// A connection with no request in progress is closed after this long: it bounds both the
    /// wait for a request head (a half-sent head counts as idle) and keep-alive idleness.
    public var idleTimeout: Duration = .seconds(10)
    /// A request's body must have arrived this long after its head, or the connection is closed.
    public var requestTimeout: Duration = .seconds(30)

    public init(host: String = "127.0.0.1", port: Int = 9901, token: String? = nil,
                alertRouteLabel: String = AdminServer.defaultRouteLabel) {
        self.host = host
        self.port = port
        self.token = token
        self.alertRouteLabel = alertRouteLabel
    }

    /// Refuses a listener that anyone on the network could reach without a token.
    public func validate() throws(AdminError) {
        let loopback = host == "localhost" || host == "::1" || host.hasPrefix("127.")
        if token == nil && !loopback {
            throw AdminError(status: 0, message: "refusing to serve the admin API on \(host) without a token: "
                + "set --admin-token-file or TEAL_ADMIN_TOKEN, or listen on a loopback address")
        }
    }
}

/// The admin HTTP API (JSON) on its own listener: routes, splits, releases and the journal.
public enum AdminServer {
    /// Builds the router of the API over `backend`; `buildApplication` serves it.
    /// The OpenAPI 3 document of this API (`Sources/TealAdmin/openapi.yaml`).
    public static let openAPIDocument: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return "" }
        return text
    }()

    /// The alert label that names the route to roll back.
    public static let defaultRouteLabel = "teal_route"

    public static func router(backend: any AdminBackend, token: String?, routeLabel: String = defaultRouteLabel) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: await backend.metrics())))
        }
        let v1 = router.group("v1").add(middleware: BearerTokenMiddleware(token: token))
        v1.get("openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(string: openAPIDocument)))
        }
        v1.get("routes") { _, _ in try json(backend.routes()) }
        v1.get("routes/:route") { _, context in
            let name = try context.parameters.require("route")
            guard let route = backend.route(named: name) else { throw AdminError.notFound("no route named \(name)") }
            return try json(route)
        }
        v1.put("routes/:route/split") { request, context in
            let name = try context.parameters.require("route")
            let body = try await decode(SplitBody.self, from: request)
            guard let split = Split(blue: body.blue, green: body.green) else {
                throw AdminError.badRequest("split \(body.blue)/\(body.green) is not valid: weights are 0...\(Split.maxWeight) and not both 0")
            }
            return try json(try await backend.setSplit(split, route: name, by: requester(request)))
        }
        v1.post("routes/:route/rollout") { request, context in
            let name = try context.parameters.require("route")
            let body = try await decode(RolloutRequest.self, from: request, allowEmpty: true)
            return try json(try await backend.startRollout(route: name, request: body, by: requester(request)), status: .created)
        }
        v1.get("routes/:route/rollout") { _, context in
            try json(try backend.rollout(route: try context.parameters.require("route")))
        }
        v1.post("routes/:route/rollout/:action") { request, context in
            let name = try context.parameters.require("route")
            let action = try context.parameters.require("action")
            guard ["promote", "pause", "resume", "abort"].contains(action) else {
                throw AdminError.notFound("no rollout action \(action); expected promote, pause, resume or abort")
            }
            return try json(try await backend.rolloutAction(action, route: name, by: requester(request)))
        }
        v1.get("events") { request, _ in
            let route = request.uri.queryParameters.get("route")
            var since: Date?
            if let text = request.uri.queryParameters.get("since") {
                guard let date = ISO8601DateFormatter().date(from: text) else {
                    throw AdminError.badRequest("since \"\(text)\" is not an ISO 8601 time, e.g. 2026-11-27T10:00:00Z")
                }
                since = date
            }
            return try json(await backend.events(route: route, since: since))
        }
        v1.post("reload") { request, _ in
            try json(try await backend.reload(by: requester(request)))
        }
        v1.post("alerts") { request, _ in
            let payload = try await decode(AlertmanagerPayload.self, from: request)
            var results: [AlertResult] = []
            for alert in payload.alerts where alert.status == "firing" {
                guard let route = alert.labels[routeLabel] else { continue }
                let name = alert.labels["alertname"] ?? "unnamed alert"
                results.append(AlertResult(route: route, alert: name, result: await backend.alert(route: route, name: name)))
            }
            return try json(results)
        }
        return router
    }

    /// Who sent an API request, as the journal names it: `cli` for the `teal` command (its
    /// User-Agent is teal-cli), else `api` with the User-Agent.
    static func requester(_ request: Request) -> String {
        guard let agent = request.headers[.userAgent] else { return "api" }
        return agent.hasPrefix(AdminClient.userAgent) ? "cli" : "api (\(agent))"
    }

    /// The admin application on `configuration`'s address.
    /// The admin application on `configuration`'s address, bounded by its connection limit and
    /// timeouts.
    public static func application(backend: any AdminBackend, configuration: AdminConfiguration,
                                   logger: Logger) throws(AdminError) -> some ApplicationProtocol {
        try configuration.validate()
        let limiter = AdminConnectionLimiter(limit: configuration.maxConnections,
                                             requestTimeout: TimeAmount(configuration.requestTimeout), logger: logger)
        let http = HTTP1Channel.Configuration(additionalChannelHandlers: [limiter.makeHandler()],
                                              idleTimeout: TimeAmount(configuration.idleTimeout))
        return Application(router: router(backend: backend, token: configuration.token, routeLabel: configuration.alertRouteLabel),
                           server: .http1(configuration: http),
                           configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                                serverName: "teal-admin"),
                           logger: logger)
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        var data = try encoder.encode(value)
        data.append(UInt8(ascii: "\n"))
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Decodes a JSON body, turning decoding errors into 400s that name the field.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, allowEmpty: Bool = false) async throws -> T {
        let buffer = try await request.body.collect(upTo: 1 << 20)
        if allowEmpty && buffer.readableBytes == 0, let empty = try? JSONDecoder().decode(T.self, from: Data("{}".utf8)) {
            return empty
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw AdminError.badRequest(describe(error))
        } catch {
            throw AdminError.badRequest("the body is not valid JSON")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context.codingPath)
            return "missing field \(parent.isEmpty ? key.stringValue : parent + "." + key.stringValue)"
        case .typeMismatch(let type, let context):
            return "field \(path(context.codingPath)) must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "field \(path(context.codingPath)) must be \(typeName(type)), found null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body is not valid JSON" : "field \(path(context.codingPath)) is not valid"
        @unknown default:
            return "the body does not match the expected shape"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Double.Type, is UInt64.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: type is [Any].Type ? "a list" : "an object"
        }
    }
}

extension AdminError: HTTPResponseError {
    public var status: HTTPResponse.Status { .init(code: statusCode) }
    private var statusCode: Int { code == 0 ? 500 : code }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try AdminServer.json(["error": message], status: .init(code: statusCode))
        if statusCode == 401 { response.headers[.wwwAuthenticate] = "Bearer realm=\"teal\"" }
        return response
    }
}

/// Requires `Authorization: Bearer TOKEN` when a token is set; compares in constant time.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?

    init(token: String?) {
        self.token = token.map { Array($0.utf8) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw AdminError(status: 401, message: "this endpoint needs Authorization: Bearer TOKEN")
        }
        guard Self.constantTimeEquals(Array(header.utf8.dropFirst(7)), token) else {
            throw AdminError(status: 401, message: "the bearer token is not valid")
        }
        return try await next(request, context)
    }

    /// Compares every byte whatever the first difference, so timing does not tell how much matched.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // The whole length difference counts: truncated to a byte, a token followed by 256 NULs
        // would match.
        var difference = a.count ^ b.count
        for index in 0..<max(a.count, b.count) {
            difference |= Int((index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0))
        }
        return difference == 0
    }
}
