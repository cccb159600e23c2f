import Hummingbird

/// The admin API's answers to requests no endpoint takes, and to HEAD, per RFC 9110:
///
/// - a path the API has, asked with a method it does not answer there: 405 with `Allow`
///   (§15.5.6), whatever the token, since the document says which paths exist;
/// - a path the API does not have: 404; both with a JSON `{"error": …}` body like every error;
/// - HEAD: the GET answer's status and header fields, the body left out (§9.3.2), error answers
///   included.
///
/// The router must be built with `.autoGenerateHeadEndpoints` (HEAD runs the GET endpoint), and
/// this middleware added first, so that it wraps every endpoint and the router's not-found answer.
struct HTTPSemanticsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            // Thrown by the router when no endpoint has this path and method; endpoints throw
            // AdminError for what they do not find.
            response = try Self.unmatched(request).response(from: request, context: context)
            if let allowed = AdminServer.allowedMethods(path: request.uri.path) {
                response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
            }
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        return request.method == .head ? response.createHeadResponse() : response
    }

    /// The error for a request no endpoint takes: 405 when the path has other methods, else 404.
    static func unmatched(_ request: Request) -> AdminError {
        let path = request.uri.path
        guard let allowed = AdminServer.allowedMethods(path: path) else {
            return .notFound("no endpoint \(path); the API's paths are in /v1/openapi.yaml")
        }
        let names = allowed.map(\.rawValue).joined(separator: ", ")
        return AdminError(status: 405, message: "\(path) does not answer \(request.method.rawValue); it answers \(names)")
    }
}
