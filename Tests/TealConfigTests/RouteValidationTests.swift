import TealConfig
import TealCore
import Testing

@Suite struct RouteValidationTests {
    private let files = ["routes/a.yaml", "routes/b.yaml"]

    private func route(_ name: String, host: String? = nil, pathPrefix: String? = nil) -> Route {
        Route(name: name, match: RouteMatch(host: host.flatMap { HostPattern(parsing: $0) }, pathPrefix: pathPrefix),
              blue: PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 9101)]))
    }

    private func validationError(_ routes: [Route]) -> String? {
        errorDescription { () throws(ConfigError) in try RouteFileLoader.validate(routes, files: Array(files.prefix(routes.count))) }
    }

    @Test func distinctRoutesPass() {
        #expect(validationError([route("shop", host: "shop.example.com"), route("default")]) == nil)
        #expect(validationError([route("api", pathPrefix: "/api"), route("web", pathPrefix: "/web")]) == nil)
        #expect(validationError([route("one", host: "*.example.com"), route("two", host: "example.com")]) == nil)
        #expect(validationError([]) == nil)
    }

    @Test func duplicateNamesNameBothFiles() {
        #expect(validationError([route("shop", host: "a.example.com"), route("shop", host: "b.example.com")])
            == "routes/b.yaml: route `shop` is already defined in routes/a.yaml; route names must be unique")
    }

    @Test func duplicateMatchesNameBothFiles() {
        #expect(validationError([route("one", host: "Shop.example.com", pathPrefix: "/api"),
                                 route("two", host: "shop.example.com", pathPrefix: "/api")])
            == "routes/b.yaml: match (host shop.example.com path /api) is the same as route `one`'s in routes/a.yaml; each route needs its own host or pathPrefix")
        // No pathPrefix means `/`.
        #expect(validationError([route("one", host: "shop.example.com"), route("two", host: "shop.example.com", pathPrefix: "/")])
            == "routes/b.yaml: match (host shop.example.com path /) is the same as route `one`'s in routes/a.yaml; each route needs its own host or pathPrefix")
    }

    @Test func atMostOneDefaultRoute() {
        #expect(validationError([route("one"), route("two")])
            == "routes/b.yaml: route `two` has no match, but route `one` in routes/a.yaml is already the default route; give one of them a match")
        #expect(validationError([route("one"), route("two", pathPrefix: "/")])
            == "routes/b.yaml: route `two` has no match, but route `one` in routes/a.yaml is already the default route; give one of them a match")
    }

    @Test func errorsNameTheKey() throws {
        let error = try #require(throws: ConfigError.self) {
            try RouteFileLoader.validate([route("x"), route("x", pathPrefix: "/x")], files: files)
        }
        #expect(error.key == "route" && error.line == nil && error.file == "routes/b.yaml")
    }
}
