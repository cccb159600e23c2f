import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import TealAdmin
import TealCore
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
            #expect(Set(paths.keys) == ["/healthz", "/readyz", "/metrics", "/v1/openapi.yaml", "/v1/reload", "/v1/routes", "/v1/routes/{route}", "/v1/routes/{route}/split",
                                        "/v1/routes/{route}/rollout", "/v1/routes/{route}/rollout/{action}", "/v1/events", "/v1/alerts", "/v1/replicas"])
            // Order matters for state: start a release before acting on it.
            let order = ["get", "head", "post", "put"]
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
                        if let documented = responses[status] as? [String: Any], let content = documented["content"] as? [String: Any] {
                            let served = response.headers[.contentType]?.split(separator: ";").first.map(String.init)
                            #expect(served.map { content[$0] != nil } == true, "\(key): served \(served ?? "no Content-Type"), documented \(content.keys)")
                        }
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

            // Every other method on a documented path is 405, and Allow lists exactly the documented ones.
            let methods = ["get", "head", "post", "put", "delete", "patch", "options", "trace"]
            for (path, item) in paths {
                let documented = Set(methods.filter { item[$0] != nil }.map { $0.uppercased() })
                #expect(documented.contains("GET") == documented.contains("HEAD"), "\(path): HEAD is documented with GET")
                let uri = path.replacingOccurrences(of: "{route}", with: "shop").replacingOccurrences(of: "{action}", with: "pause")
                for method in methods.map({ $0.uppercased() }) where !documented.contains(method) {
                    try await client.execute(uri: uri, method: HTTPRequest.Method(rawValue: method)!, headers: harness.auth) { response in
                        #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                        let allow = Set((response.headers[.allow] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                        #expect(allow == documented, "\(method) \(path)")
                    }
                }
                // Operations that read a body say they may answer 413.
                for method in documented {
                    guard let operation = item[method.lowercased()] as? [String: Any], operation["requestBody"] != nil else { continue }
                    #expect((operation["responses"] as? [String: Any])?["413"] != nil, "\(method) \(path) does not document 413")
                }
            }
        }
    }

    @Test("the document loads with no stray keys (a YAML null from an unquoted comma or colon)")
    func noStrayKeys() throws {
        let document = try #require(try Yams.load(yaml: AdminServer.openAPIDocument) as? [String: Any])
        var strays: [String] = []
        func walk(_ value: Any, _ path: String) {
            if let object = value as? [String: Any] {
                for (key, child) in object {
                    if child is NSNull || (child as Any?) == nil { strays.append("\(path)/\(key)") }
                    walk(child, "\(path)/\(key)")
                }
            } else if let array = value as? [Any] {
                for (index, child) in array.enumerated() { walk(child, "\(path)[\(index)]") }
            }
        }
        walk(document, "")
        #expect(strays.isEmpty, "\(strays)")
        let events = try #require(((document["paths"] as? [String: Any])?["/v1/events"] as? [String: Any])?["get"] as? [String: Any])
        let ok = try #require((events["responses"] as? [String: Any])?["200"] as? [String: Any])
        #expect(ok["description"] as? String == "entries, oldest first")
    }

    /// The document's patterns, read by NSRegularExpression.
    static func pattern(_ keyPath: [String]) throws -> NSRegularExpression {
        var value: Any? = try Yams.load(yaml: AdminServer.openAPIDocument)
        for key in keyPath { value = (value as? [String: Any])?[key] }
        return try NSRegularExpression(pattern: try #require(value as? String, "\(keyPath)"))
    }

    static func matches(_ expression: NSRegularExpression, _ text: String) -> Bool {
        expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    @Test("the document's patterns accept exactly what the server accepts: durations, plan steps, instance addresses")
    func patternsMatchTheServer() throws {
        let schemas = ["components", "schemas"]
        let duration = try Self.pattern(schemas + ["Duration", "pattern"])
        for text in ["30s", "250ms", "1.5m", "1h", "0s", "999999h", "999h", "1000h", "99999m", "100000m", "9999999s", "10000000s",
                     "9999999999ms", "10000000000ms", "8760h", "000001s", "1.123456789s", "", "s", "1", "1.s", ".5s", "1.5", "-1s",
                     "1234567s", "1.1234567890s", "1d", "1 s", " 1s", "1s ", "1S", "1.5.5s", "１s", "1e3s", "+1s", "1,5s"] {
            #expect(Self.matches(duration, text) == AdminServer.isDuration(text), "duration \"\(text)\"")
        }
        let step = try Self.pattern(schemas + ["RolloutRequest", "properties", "steps", "items", "pattern"])
        for text in ["2/4", "0/6", "6/0", "0/0", "1000/1000", "1001/1", "1/1001", "0001/4", "00/0", "25%", "0%", "100%", "101%", "0100%",
                     "%", "-1/2", "1/-2", "1/2/3", "1/", "/1", " 2/4", "2/4\t", " 25% ", "2 /4", "2/ 4", "25 %", "2.5/4", "２/4", "1/1a",
                     "+1/2", "99999999999999999999/1", "", "a", "0/1000", "1000/0"] {
            #expect(Self.matches(step, text) == (Split(parsing: text) != nil), "step \"\(text)\"")
        }
        let instance = try Self.pattern(schemas + ["RolloutRequest", "properties", "green", "properties", "instances", "items", "pattern"])
        for text in ["127.0.0.1:9201", "localhost:1", "h:65535", "h:65536", "h:0", "h:00080", "h:", ":80", "h", "[::1]:80", "[::1]", "[::1]80",
                     "[x]:80", "[:]:80", "[a b:]:80", "[a/:]:80", "::1:80", "h:80:80", "a b:80", "a/b:80", " h:80 ", "\th:80", "h\t:80",
                     "a[b:80", "[a:b]]:80", "h:+80", "h:8 0", "é:80", "h:８0", "[a:b]:99999", "", "[\u{1F3FB}\u{13}x:~y]:2930",
                     "h:\u{301}80", "a]b:80", "[a[b:c]:80", "[a\\:b]:80", "h^~!:80", "[^:~]:80", "h\u{7F}:80", "\u{1}h:80"] {
            #expect(Self.matches(instance, text) == (InstanceAddress(parsing: text)?.description == text), "instance \"\(text)\"")
        }
    }
}

extension OpenAPIContractTests {
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
