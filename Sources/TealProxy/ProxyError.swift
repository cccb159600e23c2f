/// An error answer made by Teal itself (not by an upstream): status, a stable name sent in the
/// `X-Teal-Error` header, and a short text body.
struct ProxyError: Equatable {
    let status: Int
    let name: String
    let message: String

    static let noRoute = ProxyError(status: 404, name: "no-route", message: "no route matched this request")
    static let methodNotAllowed = ProxyError(status: 405, name: "method-not-allowed", message: "CONNECT is not served by this proxy")
    static let headerTimeout = ProxyError(status: 408, name: "header-read-timeout", message: "the request head did not arrive in time")
    static let bodyTimeout = ProxyError(status: 408, name: "body-read-timeout", message: "the request body stopped arriving")
    static let invalidChunk = ProxyError(status: 400, name: "invalid-chunked-body", message: "the chunked request body is malformed")
    static let noHealthyInstance = ProxyError(status: 503, name: "no-healthy-instance", message: "the chosen pool has no healthy instance")
    static let connectFailed = ProxyError(status: 502, name: "upstream-connect-failed", message: "no instance of the pool accepted a connection")
    static let connectTimeout = ProxyError(status: 504, name: "upstream-connect-timeout", message: "connecting to the instances of the pool timed out")
    static let upstreamTimeout = ProxyError(status: 504, name: "upstream-timeout", message: "the instance did not answer in time")
    static let invalidResponse = ProxyError(status: 502, name: "upstream-invalid-response", message: "the instance sent an invalid response")
    static let upstreamClosed = ProxyError(status: 502, name: "upstream-closed", message: "the instance closed the connection before answering")

    init(status: Int, name: String, message: String) {
        self.status = status
        self.name = name
        self.message = message
    }

    init(_ error: RequestHeadError) {
        self.init(status: error.status, name: error.name, message: error.message)
    }

    static func forUpstream(_ failure: UpstreamFailure) -> ProxyError {
        switch failure {
        case .connectRefused: .connectFailed
        case .connectTimeout: .connectTimeout
        case .closed: .upstreamClosed
        case .invalidResponse: .invalidResponse
        case .timeout: .upstreamTimeout
        }
    }

    var reason: String {
        switch status {
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 414: "URI Too Long"
        case 431: "Request Header Fields Too Large"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }

    /// The answer's text body.
    var body: String { "teal: \(message) (\(name))\n" }
    static let contentType = "text/plain; charset=utf-8"

    /// The whole response, ready to write.
    func response(close: Bool, includeBody: Bool) -> String {
        return "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(Self.contentType)\r\n"
            + "Content-Length: \(body.utf8.count)\r\nX-Teal-Error: \(name)\r\n"
            + (close ? "Connection: close\r\n" : "") + "\r\n" + (includeBody ? body : "")
    }
}
