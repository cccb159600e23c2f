import TealCore
import Testing

private func match(_ host: String?, _ prefix: String? = nil) -> RouteMatch {
    RouteMatch(host: host.map { HostPattern(parsing: $0)! }, pathPrefix: prefix)
}

@Suite struct RouteTableTests {
    /// A table with every kind of route; indices are route numbers.
    static let routes: [RouteMatch] = [
        match("shop.example.com"),                 // 0
        match("shop.example.com", "/api"),         // 1
        match("shop.example.com", "/api/v2"),      // 2
        match("*.example.com"),                    // 3
        match("*.eu.example.com"),                 // 4
        match("*.example.com", "/static"),         // 5
        match(nil, "/health"),                     // 6
        .any,                                      // 7
        match("admin.example.com", "/admin"),      // 8
        match("*.eu.example.com", "/only"),        // 9
    ]
    let table = RouteTable(matches: Self.routes)

    @Test(arguments: [
        // exact host beats wildcard; longest prefix wins within the exact group
        ("shop.example.com", "/", 0),
        ("shop.example.com", "/cart", 0),
        ("shop.example.com", "/api", 1),
        ("shop.example.com", "/api/v1/items", 1),
        ("shop.example.com", "/api/v2/items", 2),
        ("shop.example.com", "/static/x.css", 0),  // exact host with "/" wins over the wildcard's longer prefix
        // wildcards: longer suffix beats shorter, then longest prefix
        ("www.example.com", "/", 3),
        ("www.example.com", "/static/app.js", 5),
        ("a.eu.example.com", "/", 4),
        ("a.eu.example.com", "/static/app.js", 4),  // the longer suffix group wins before prefixes compare
        ("a.eu.example.com", "/only/x", 9),
        ("x.y.eu.example.com", "/", 4),
        // exact group without a matching prefix falls through to wildcard, then host-less routes
        ("admin.example.com", "/admin/users", 8),
        ("admin.example.com", "/", 3),
        ("admin.example.com", "/static/a", 5),
        // host-less routes and the default route
        ("other.org", "/health", 6),
        ("other.org", "/healthz", 6),  // byte prefix
        ("other.org", "/", 7),
        ("other.org", "/anything/else", 7),
        ("", "/", 7),
        ("example.com", "/", 7),  // *.example.com does not match example.com itself
        ("example.com", "/static/a", 7),
    ])
    func lookup(host: String, path: String, expected: Int) {
        #expect(table.lookup(host: host, path: path) == expected, "\(host) \(path)")
    }

    @Test(arguments: [
        ("SHOP.Example.COM", "/api", 1),
        ("shop.example.com:8080", "/api", 1),
        ("shop.example.com.", "/api", 1),
        ("shop.example.com.:443", "/api/v2", 2),
        ("WWW.EXAMPLE.COM:80", "/static/", 5),
        ("www.example.com.", "/", 3),
    ])
    func hostIgnoresCasePortAndTrailingDot(host: String, path: String, expected: Int) {
        #expect(table.lookup(host: host, path: path) == expected, "\(host) \(path)")
    }

    @Test func wildcardDoesNotMatchItsBareDomain() {
        let table = RouteTable(matches: [match("*.example.com")])
        #expect(table.lookup(host: "example.com", path: "/") == nil)
        #expect(table.lookup(host: ".example.com", path: "/") == nil)
        #expect(table.lookup(host: "xexample.com", path: "/") == nil)
        #expect(table.lookup(host: "a.example.com", path: "/") == 0)
        #expect(table.lookup(host: "a.example.com.evil.org", path: "/") == nil)
    }

    @Test func noRouteIsNil() {
        let table = RouteTable(matches: [match("shop.example.com"), match(nil, "/api")])
        #expect(table.lookup(host: "other.example.com", path: "/") == nil)
        #expect(table.lookup(host: "shop.example.com", path: "/") == 0)
        #expect(table.lookup(host: "other.example.com", path: "/api/x") == 1)
        #expect(RouteTable(matches: []).lookup(host: "a", path: "/") == nil)
    }

    @Test func prefixesCompareBytes() {
        let table = RouteTable(matches: [match(nil, "/api")])
        #expect(table.lookup(host: "h", path: "/api") == 0)
        #expect(table.lookup(host: "h", path: "/api/x") == 0)
        #expect(table.lookup(host: "h", path: "/apix") == 0)
        #expect(table.lookup(host: "h", path: "/ap") == nil)
        #expect(table.lookup(host: "h", path: "/API") == nil)  // paths are case-sensitive
        #expect(table.lookup(host: "h", path: "/v1/api") == nil)
    }

    @Test func exactHostsDoNotMatchOtherHosts() {
        let table = RouteTable(matches: [match("shop.example.com")])
        #expect(table.lookup(host: "shop.example.co", path: "/") == nil)
        #expect(table.lookup(host: "shop.example.comm", path: "/") == nil)
        #expect(table.lookup(host: "xshop.example.com", path: "/") == nil)
    }

    @Test func equalRoutesResolveToTheFirst() {
        let table = RouteTable(matches: [match(nil, "/a"), match(nil, "/a"), match("h", "/"), match("h", "/")])
        #expect(table.lookup(host: "x", path: "/a") == 0)
        #expect(table.lookup(host: "h", path: "/") == 2)
    }

    @Test func rawLookupAgreesWithStringLookup() {
        let host = Array("Shop.Example.com:80".utf8), path = Array("/api/v2/x".utf8)
        let index = host.withUnsafeBytes { h in path.withUnsafeBytes { p in table.lookup(host: h, path: p) } }
        #expect(index == 2)
    }

    /// RouteMatch.any is documented as "a match that takes every request", and RouteTable as "a route
    /// with no match at all is the default and takes any request nothing else took". Request targets
    /// that are not origin-form paths (`OPTIONS * HTTP/1.1`, which the request parser accepts, and an
    /// absolute-form target without a path, `GET http://host HTTP/1.1`, whose routing path is empty)
    /// must still reach the default route.
    @Test(arguments: ["*", ""])
    func defaultRouteTakesTargetsWithoutALeadingSlash(path: String) {
        let table = RouteTable(matches: [.any])
        #expect(table.lookup(host: "shop.example.com", path: path) == 0)
    }
}
