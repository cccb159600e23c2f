import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client of the admin API, as the `teal` commands use it: address from `--admin` or
/// `TEAL_ADMIN`, token from `TEAL_ADMIN_TOKEN`; server errors come back as the server gave them.
public struct AdminClient: Sendable {
    /// Sent as User-Agent; the server journals requests carrying it as coming from the CLI.
    public static let userAgent = "teal-cli"
    public let base: URL
    public let token: String?

    /// `address` is a URL (`http://127.0.0.1:9901`) or `host:port`.
    public init(address: String, token: String?) throws(AdminError) {
        let text = address.contains("://") ? address : "http://\(address)"
        guard let url = URL(string: text), url.host != nil else {
            throw AdminError(status: 0, message: "admin address \"\(address)\" is not a URL, e.g. http://127.0.0.1:9901")
        }
        base = url
        self.token = token
    }

    /// Sends a request and decodes the answer; a non-2xx answer throws its error message.
    public func send<T: Decodable>(_ method: String, _ path: String, body: (any Encodable & Sendable)? = nil,
                                   as type: T.Type = T.self) async throws(AdminError) -> T {
        var root = base.absoluteString
        while root.hasSuffix("/") { root.removeLast() }
        guard let url = URL(string: root + path) else { throw AdminError(status: 0, message: "bad request path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        request.setValue(Self.userAgent, forHTTPHeaderField: "User-Agent")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try? JSONEncoder().encode(body)
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw AdminError(status: 0, message: "cannot reach the admin API at \(base.absoluteString): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode([String: String].self, from: data))?["error"]
                ?? String(decoding: data, as: UTF8.self)
            throw AdminError(status: status, message: message)
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(T.self, from: data)
        } catch {
            throw AdminError(status: 0, message: "unexpected answer from the admin API: \(error)")
        }
    }

    /// The outcome of `teal rollout wait`: 0 promoted, 1 rolled back or aborted, 2 error or timeout.
    public func waitForOutcome(route: String, timeout: Duration, poll: Duration = .milliseconds(200),
                               progress: @Sendable (RolloutView) -> Void = { _ in }) async -> (code: Int32, view: RolloutView?, error: AdminError?) {
        let deadline = ContinuousClock.now + timeout
        var last: RolloutView?
        while ContinuousClock.now < deadline {
            do {
                var view: RolloutView = try await send("GET", "/v1/routes/\(route)/rollout")
                // The hold clock moves on every poll; progress is any other change.
                view.heldSeconds = nil
                if view != last { progress(view) }
                last = view
                switch view.state {
                case "promoted": return (0, view, nil)
                case "rolled-back", "aborted": return (1, view, nil)
                default: break
                }
            } catch {
                return (2, last, error)
            }
            try? await Task.sleep(for: poll)
        }
        return (2, last, AdminError(status: 0, message: "timed out after \(timeout) waiting for the release of \(route)"))
    }
}
