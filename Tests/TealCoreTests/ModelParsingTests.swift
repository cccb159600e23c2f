import TealCore
import Testing

@Suite struct SplitParsingTests {
    @Test(arguments: [
        ("2/4", 2, 4), (" 2/4 ", 2, 4), ("\t6/0\t", 6, 0), ("0/6", 0, 6), ("1000/1000", 1000, 1000),
        ("25%", 75, 25), ("100%", 0, 100), ("0%", 100, 0), (" 50% ", 50, 50), ("1%", 99, 1),
    ])
    func parses(text: String, blue: Int, green: Int) throws {
        let split = try #require(Split(parsing: text))
        #expect(split.blue == blue)
        #expect(split.green == green)
    }

    @Test(arguments: ["2-4", "0/0", "-1/2", "2/-1", "1001/1", "1/1001", "abc", "/", "2/", "/4", "101%", "-1%", "%",
                      "", "   ", "2/4/6", "2 /4", "a/b", "25 %", "2.5/4", "0x2/4"])
    func rejects(text: String) {
        #expect(Split(parsing: text) == nil)
    }

    @Test func memberwiseBounds() {
        #expect(Split(blue: 0, green: 0) == nil)
        #expect(Split(blue: -1, green: 1) == nil)
        #expect(Split(blue: 1001, green: 0) == nil)
        #expect(Split(blue: 1000, green: 0) != nil)
        #expect(Split.maxWeight == 1000)
    }

    @Test func description() {
        #expect(Split(blue: 2, green: 4)!.description == "2/4")
        #expect(Split(parsing: "25%")!.description == "75/25")
        #expect(Split.allBlue.description == "1/0")
        #expect("\(Split(blue: 0, green: 6)!)" == "0/6")
    }

    @Test func greenFraction() {
        #expect(Split(blue: 2, green: 4)!.greenFraction == 4.0 / 6.0)
        #expect(Split(blue: 6, green: 0)!.greenFraction == 0)
        #expect(Split(blue: 0, green: 6)!.greenFraction == 1)
    }

    @Test func equalityIsByWeightsNotRatio() {
        #expect(Split(parsing: "2/4") == Split(blue: 2, green: 4))
        #expect(Split(parsing: "2/4") != Split(blue: 1, green: 2))
    }
}

@Suite struct InstanceAddressParsingTests {
    @Test(arguments: [
        ("127.0.0.1:9101", "127.0.0.1", 9101), ("10.0.0.1:80", "10.0.0.1", 80),
        ("app-1.internal:8080", "app-1.internal", 8080), ("localhost:1", "localhost", 1),
        ("[::1]:80", "::1", 80), ("[fe80::1:2]:65535", "fe80::1:2", 65535), (" host:443 ", "host", 443),
    ])
    func parses(text: String, host: String, port: Int) throws {
        let address = try #require(InstanceAddress(parsing: text))
        #expect(address.host == host)
        #expect(address.port == port)
    }

    @Test(arguments: ["127.0.0.1", "host", "host:", ":80", "[]:80", "host:0", "host:65536", "host:-1", "host:abc",
                      "::1:80", "[::1]", "[::1]80", "[::1:80", "[127.0.0.1]:80", "a b:80", "a/b:80", "", "host:99999999999999999999",
                      "[\u{1F3FB}a:b]:80", "host:\u{301}80", "h\u{301}:80", "h\t:80", "é.example:80", "h\u{7F}:80"])
    func rejects(text: String) {
        #expect(InstanceAddress(parsing: text) == nil)
    }

    @Test func description() {
        #expect(InstanceAddress(host: "::1", port: 80).description == "[::1]:80")
        #expect(InstanceAddress(host: "10.0.0.1", port: 9101).description == "10.0.0.1:9101")
        #expect(InstanceAddress(parsing: "[::1]:80")!.description == "[::1]:80")
    }

    @Test func ordersByHostThenPort() {
        let addresses = ["b:1", "a:20", "a:3"].map { InstanceAddress(parsing: $0)! }
        #expect(addresses.sorted().map(\.description) == ["a:3", "a:20", "b:1"])
    }
}

@Suite struct HostPatternParsingTests {
    @Test(arguments: [
        ("shop.example.com", HostPattern.exact("shop.example.com")),
        ("Shop.Example.COM", .exact("shop.example.com")),
        (" shop.example.com ", .exact("shop.example.com")),
        ("localhost", .exact("localhost")),
        ("*.example.com", .suffix(".example.com")),
        ("*.Example.Com", .suffix(".example.com")),
        ("*.com", .suffix(".com")),
    ])
    func parses(text: String, pattern: HostPattern) {
        #expect(HostPattern(parsing: text) == pattern)
    }

    @Test(arguments: ["shop.*.com", "*", "*.", "", "  ", "*.*.com", "**.example.com", "*example.com", "shop*.example.com",
                      "shop.example.com:80", "shop example.com", "shop/example"])
    func rejects(text: String) {
        #expect(HostPattern(parsing: text) == nil)
    }

    @Test func description() {
        #expect(HostPattern.exact("shop.example.com").description == "shop.example.com")
        #expect(HostPattern.suffix(".example.com").description == "*.example.com")
        #expect(HostPattern(parsing: "*.Example.com")!.description == "*.example.com")
    }
}
