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
    /// replaces the longest idle one, or gets 503 when every one is in a request
    /// (`AdminConnectionLimiter`). Kept far below the proxy's
    /// connection limit, so the admin port can never use up the descriptors the proxy needs.
    public var maxConnections = 512
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

    /// The methods each path of the API answers (paths in Hummingbird's syntax, `:name` for a
    /// segment), in the order `Allow` lists them; HEAD goes with GET. `router` serves exactly
    /// these, and another method on one of these paths is answered 405 with `Allow`.
    static let endpoints: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/healthz", [.get]),
        ("/readyz", [.get]),
        ("/metrics", [.get]),
        ("/v1/openapi.yaml", [.get]),
        ("/v1/routes", [.get]),
        ("/v1/routes/:route", [.get]),
        ("/v1/routes/:route/split", [.put]),
        ("/v1/routes/:route/rollout", [.get, .post]),
        ("/v1/routes/:route/rollout/:action", [.post]),
        ("/v1/events", [.get]),
        ("/v1/reload", [.post]),
        ("/v1/alerts", [.post]),
        ("/v1/replicas", [.get]),
    ]

    public static func router(backend: any AdminBackend, token: String?, routeLabel: String = defaultRouteLabel) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)
        // First, so that it wraps every endpoint and the not-found answer.
        router.add(middleware: HTTPSemanticsMiddleware())
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ in
            let reason = backend.notReady()
            return Response(status: reason == nil ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: reason.map { "not ready: \($0)\n" } ?? "ready\n")))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: await backend.metrics())))
        }
        let v1 = router.group("v1").add(middleware: BearerTokenMiddleware(token: token))
        v1.get("openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(string: openAPIDocument)))
        }
        v1.get("routes") { _, _ in try json(backend.routes()) }
        v1.get("replicas") { _, _ in try json(try await backend.replicas()) }
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
            for (field, value) in [("hold", body.hold), ("maxP99", body.maxP99)] {
                guard let value, !isDuration(value) else { continue }
                throw AdminError.badRequest("field \(field): \"\(value)\" is not a duration, e.g. 30s, 250ms or 1.5m "
                    + "(a unit ms, s, m or h, with at most 10, 7, 5 or 3 digits before the point and 9 after it)")
            }
            return try json(try await backend.startRollout(route: name, request: body, by: requester(request)), status: .created)
        }
        v1.get("routes/:route/rollout") { _, context in
            try json(try await backend.rollout(route: try context.parameters.require("route")))
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
                guard let date = InternetDateTime.parse(text) else {
                    throw AdminError.badRequest("since \"\(text)\" is not an ISO 8601 time (RFC 3339), e.g. 2026-11-27T10:00:00Z "
                        + "or 2026-11-27T10:00:00.123+01:00")
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
            // Checked before any alert acts, so a refused payload changes nothing.
            for (index, alert) in payload.alerts.enumerated() {
                for label in ["alertname", routeLabel] where alert.labels[label].map({ $0.unicodeScalars.count > InputLimits.alertNameLength }) == true {
                    // Counted in code points, as the document's maxLength counts.
                    throw AdminError.badRequest("field alerts[\(index)].labels.\(label) is longer than \(InputLimits.alertNameLength) characters")
                }
            }
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

    /// Whether `text` is a duration as the API document's `Duration` pattern says: a number with
    /// up to 9 decimals and a unit, with at most 10 whole digits for ms, 7 for s, 5 for m and 3
    /// for h, so every duration the pattern allows is below the longest Teal takes (8760h).
    static func isDuration(_ text: String) -> Bool {
        let units: [(suffix: String, wholeDigits: Int)] = [("ms", 10), ("s", 7), ("m", 5), ("h", 3)]
        guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else { return false }
        let number = text.dropLast(unit.suffix.count).split(separator: ".", omittingEmptySubsequences: false)
        let digits = { (part: Substring, most: Int) in (1...most).contains(part.count) && part.allSatisfy { ("0"..."9").contains($0) } }
        return number.count <= 2 && digits(number[0], unit.wholeDigits) && (number.count == 1 || digits(number[1], 9))
    }

    /// The methods `path` answers, from `endpoints`, with HEAD after GET; `nil` when no endpoint
    /// has this path. Empty segments are skipped, as the router does.
    static func allowedMethods(path: String) -> [HTTPRequest.Method]? {
        let segments = path.split(separator: "/")
        let endpoint = endpoints.first { endpoint in
            let pattern = endpoint.path.split(separator: "/")
            return pattern.count == segments.count && zip(pattern, segments).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
        }
        return endpoint.map { $0.methods.flatMap { $0 == .get ? [.get, .head] : [$0] } }
    }

    /// Who sent an API request, as the journal names it: `cli` for the `teal` command (its
    /// User-Agent is teal-cli), else `api` with the User-Agent.
    static func requester(_ request: Request) -> String {
        guard let agent = request.headers[.userAgent] else { return "api" }
        return agent.hasPrefix(AdminClient.userAgent) ? "cli" : "api (\(agent))"
    }

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

    /// The largest request body the API reads: 1 MiB.
    public static let maxBodyBytes = 1 << 20

    /// Decodes a JSON body, turning decoding errors into 400s that name the field, and a body
    /// over `maxBodyBytes` into a 413.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, allowEmpty: Bool = false) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw AdminError(status: 413, message: "the body is larger than the limit of 1 MiB (\(maxBodyBytes) bytes)")
        }
        if allowEmpty && buffer.readableBytes == 0, let empty = try? JSONDecoder().decode(T.self, from: Data("{}".utf8)) {
            return empty
        }
        let data = Data(buffer.readableBytesView)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty && (try? JSONDecoder().decode(AnyJSON.self, from: data)) != nil {
            // Foundation reports a number that does not fit its field's type (1.5 or 1e20 for an
            // integer) as invalid JSON with no coding path; the body is valid JSON, so say that.
            throw AdminError.badRequest("a number in the body does not fit its field: an integer field takes a whole number of at most 64 bits")
        } catch let error as DecodingError {
            throw AdminError.badRequest(describe(error))
        } catch {
            throw AdminError.badRequest("the body is not valid JSON")
        }
    }

    /// Any JSON value, numbers read as `Double`: decodes exactly when the text is valid JSON
    /// (bar numbers beyond `Double`).
    private enum AnyJSON: Decodable {
        case value

        init(from decoder: any Decoder) throws {
            if let container = try? decoder.container(keyedBy: AnyKey.self) {
                for key in container.allKeys { _ = try container.decode(AnyJSON.self, forKey: key) }
            } else if var container = try? decoder.unkeyedContainer() {
                while !container.isAtEnd { _ = try container.decode(AnyJSON.self) }
            } else {
                let container = try decoder.singleValueContainer()
                guard container.decodeNil() || (try? container.decode(Bool.self)) != nil || (try? container.decode(Double.self)) != nil
                    || (try? container.decode(String.self)) != nil else {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
                }
            }
            self = .value
        }

        private struct AnyKey: CodingKey {
            let stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }

    /// Names what a decoding error is about: `field a.b[0]`, or `the body` when it is about the
    /// whole body (an empty coding path), so no text has an empty field name.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            var text = ""
            for key in keys {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else if key.stringValue.isEmpty {
                    text += "[\"\"]"  // an empty object key, which JSON allows
                } else {
                    text += (text.isEmpty ? "" : ".") + key.stringValue
                }
            }
            return text
        }
        func subject(_ keys: [any CodingKey], _ type: Any.Type) -> String {
            keys.isEmpty ? "the body must be \(typeName(type, json: true))" : "field \(path(keys)) must be \(typeName(type))"
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context.codingPath)
            return "missing field \(parent.isEmpty ? key.stringValue : parent + "." + key.stringValue)"
        case .typeMismatch(let type, let context):
            return subject(context.codingPath, type)
        case .valueNotFound(let type, let context):
            return subject(context.codingPath, type) + ", found null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body is not valid JSON" : "field \(path(context.codingPath)) is not valid"
        @unknown default:
            return "the body does not match the expected shape"
        }
    }

    /// `a number`, `a string`, `a list`, `an object`…; `json` says `a JSON object` (for the body).
    static func typeName(_ type: Any.Type, json: Bool = false) -> String {
        switch type {
        case is Int.Type, is Double.Type, is UInt64.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: type is [Any].Type ? (json ? "a JSON list" : "a list") : (json ? "a JSON object" : "an object")
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

/// Requires `Authorization: Bearer TOKEN` when a token is set; compares in constant time. The
/// scheme's name is case-insensitive (RFC 9110 §11.1): `bearer TOKEN` is the same.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?

    init(token: String?) {
        self.token = token.map { Array($0.utf8) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        guard let header = request.headers[.authorization], let credentials = Self.bearerCredentials(header) else {
            throw AdminError(status: 401, message: "this endpoint needs Authorization: Bearer TOKEN")
        }
        guard Self.constantTimeEquals(credentials, token) else {
            throw AdminError(status: 401, message: "the bearer token is not valid")
        }
        return try await next(request, context)
    }

    /// The credentials of an `Authorization` value in the Bearer scheme (`auth-scheme 1*SP
    /// token68`, the scheme in any case); `nil` for another scheme or none.
    static func bearerCredentials(_ value: String) -> [UInt8]? {
        let bytes = Array(value.utf8)
        let scheme = Array("bearer".utf8)
        guard bytes.count > scheme.count, bytes[scheme.count] == UInt8(ascii: " "),
              zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        return Array(bytes[scheme.count...].drop { $0 == UInt8(ascii: " ") })
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
