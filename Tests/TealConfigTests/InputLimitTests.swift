import TealConfig
import TealCore
import TealTestSupport
import Testing

@Suite("Limits on values from outside")
struct InputLimitTests {
    @Test("parseDuration and formatDuration never trap, whatever the text or value")
    func extremes() {
        for text in ["9223372036854775807h", "9223372036854775807ms", "99999999999999999999999s", "1.999999999h", "0.000000001ms",
                     "18446744073709551615s", "-1s", "1e9s", ".5s", "5.s", "s", "ms", ""] {
            if let duration = parseDuration(text) { _ = formatDuration(duration) }
        }
        for duration in [Duration.seconds(Int64.max), .seconds(Int64.min), .nanoseconds(Int64.max), .nanoseconds(Int64.min), .zero] {
            #expect(!formatDuration(duration).isEmpty)
        }
        #expect(formatDuration(.seconds(Int64.max)) == "\(Int64.max)s")
    }

    @Test("seeded fuzz: 100,000 random duration texts parse or are refused, and round-trip when parsed")
    func seededFuzz() {
        var random = SplitMix64(seed: 0xD0_12A7)
        func next() -> UInt64 { random.next() }
        let alphabet = Array("0123456789.msh")
        for _ in 0..<100_000 {
            let text = String((0..<Int(next() % 24)).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
            guard let duration = parseDuration(text) else { continue }
            #expect(parseDuration(formatDuration(duration)) == duration, "\(text)")
        }
    }

    @Test("route files refuse durations over a year, naming the limit")
    func routeFileLimit() throws {
        let yaml = """
            route: shop
            blue: {instances: ["127.0.0.1:9101"]}
            health: {interval: 9000h}
            """
        #expect(throws: ConfigError.self) { try RouteFileLoader.parseRoute(yaml: yaml, file: "shop.yaml") }
        do {
            _ = try RouteFileLoader.parseRoute(yaml: yaml, file: "shop.yaml")
        } catch {
            #expect("\(error)".contains("9000h is too long; the longest duration is 8760h"), "\(error)")
        }
    }

    @Test("a split past the weight limit in a route file is refused, naming the file and the split (it killed teal serve on reload)")
    func hugeSplit() {
        let yaml = """
            route: shop
            blue: {instances: ["127.0.0.1:9101"]}
            green: {instances: ["127.0.0.1:9201"]}
            split: 9223372036854775807/1
            """
        do {
            _ = try RouteFileLoader.parseRoute(yaml: yaml, file: "shop.yaml")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("shop.yaml:4"), "\(error)")
            #expect("\(error)".contains("9223372036854775807/1"), "\(error)")
        }
    }

    @Test("plans, pools and versions over their caps are refused with the cap named")
    func caps() {
        let steps = (0...InputLimits.planSteps).map { _ in "1/1" }.joined(separator: ", ")
        let instances = (1...InputLimits.poolInstances + 1).map { "\"127.0.0.1:\(1000 + $0)\"" }.joined(separator: ", ")
        let version = String(repeating: "v", count: InputLimits.versionLength + 1)
        let cases = [
            ("rollout: {steps: [\(steps)]}", "101 steps given; a plan has at most 100"),
            ("green: {instances: [\(instances)]}", "1001 instances listed; a pool has at most 1000"),
            ("green: {version: \(version), instances: [\"127.0.0.1:9201\"]}", "at most 128 are allowed"),
        ]
        for (extra, expected) in cases {
            let yaml = "route: shop\nblue: {instances: [\"127.0.0.1:9101\"]}\n" + extra + "\n"
            do {
                _ = try RouteFileLoader.parseRoute(yaml: yaml, file: "shop.yaml")
                Issue.record("accepted: \(expected)")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
