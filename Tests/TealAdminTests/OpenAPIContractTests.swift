import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TealAdmin
import Yams

/// Checks the served OpenAPI document against the server: every documented operation answers with
/// a documented status, and JSON answers carry their schema's required fields.
@Suite("OpenAPI contract")
struct OpenAPIContractTests {
    /// Sample inputs per operation, so each one runs for real.
    static let bodies: [String: String] = [
        "PUT /v1/routes/{route}/split": #"{"blue": 1, "green": 1}"#,
        "POST /v1/routes/{route}/rollout": "{}",
        "POST /v1/alerts": #"{"alerts": []}"#,
    ]

    @Test("every documented operation answers with a documented status and the schema's required fields")
    func contract() async throws {
        let harness = try await AdminHarness()
        try await harness.run { client in
            let served = try await client.execute(uri: "/v1/openapi.yaml", method: .get, headers: harness.auth) { String(buffer: $0.body) }
            let document = try #require(try Yams.load(yaml: served) as? [String: Any])
            #expect(document["openapi"] as? String == "3.0.3")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
            #expect(Set(paths.keys) == ["/healthz", "/metrics", "/v1/openapi.yaml", "/v1/reload", "/v1/routes", "/v1/routes/{route}", "/v1/routes/{route}/split",
                                        "/v1/routes/{route}/rollout", "/v1/routes/{route}/rollout/{action}", "/v1/events", "/v1/alerts"])
            // Order matters for state: start a release before acting on it.
            let order = ["get", "post", "put"]
            for path in paths.keys.sorted() {
                for method in order {
                    guard let operation = paths[path]?[method] as? [String: Any],
                          let responses = operation["responses"] as? [String: Any] else { continue }
                    let uri = path.replacingOccurrences(of: "{route}", with: "shop").replacingOccurrences(of: "{action}", with: "abort")
                    let key = "\(method.uppercased()) \(path)"
                    let body = Self.bodies[key].map { ByteBuffer(string: $0) }
                    try await client.execute(uri: uri, method: HTTPRequest.Method(rawValue: method.uppercased())!, headers: harness.auth, body: body) { response in
                        let status = String(response.status.code)
                        #expect(responses[status] != nil, "\(key) answered \(status), not documented")
                        guard let documented = responses[status] as? [String: Any],
                              let schema = (((documented["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"]) as? [String: Any]
                        else { return }
                        let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body))
                        Self.checkRequired(json, schema: schema, schemas: schemas, context: key)
                    }
                }
            }
            // No undocumented endpoints answer.
            try await client.execute(uri: "/v1/secret", method: .get, headers: harness.auth) { #expect($0.status == .notFound) }
        }
    }

    static func resolve(_ schema: [String: Any], _ schemas: [String: [String: Any]]) -> [String: Any] {
        guard let reference = schema["$ref"] as? String else { return schema }
        return schemas[String(reference.split(separator: "/").last!)] ?? [:]
    }

    static func checkRequired(_ json: Any, schema: [String: Any], schemas: [String: [String: Any]], context: String) {
        let schema = resolve(schema, schemas)
        if schema["type"] as? String == "array", let items = schema["items"] as? [String: Any], let array = json as? [Any] {
            for element in array { checkRequired(element, schema: items, schemas: schemas, context: context) }
            return
        }
        guard let object = json as? [String: Any] else { return }
        for field in schema["required"] as? [String] ?? [] {
            #expect(object[field] != nil, "\(context): answer lacks required field \(field)")
        }
    }
}
