import TealConfig
import Testing

@Suite struct DurationParserTests {
    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)), ("30s", .seconds(30)), ("5m", .seconds(300)), ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)), ("0.1s", .milliseconds(100)), ("1.5ms", .microseconds(1500)),
        ("0.000000001s", .nanoseconds(1)), ("0s", .zero), ("007s", .seconds(7)),
        // Nine decimals on a whole part of three digits or more overflowed when scaled together.
        ("353.131420070s", .nanoseconds(353_131_420_070)), ("999999.999999999h", .nanoseconds(3_599_999_999_999_996_400)),
        ("1.999999999h", .nanoseconds(7_199_999_996_400)), ("2562047.5h", .nanoseconds(9_223_371_000_000_000_000)),
    ])
    func parses(text: String, duration: Duration) {
        #expect(parseDuration(text) == duration)
    }

    @Test(arguments: ["", "30", "1.5", "s", "ms", ".5s", "5.s", "1.2.3s", "-1s", "+1s", "1 s", " 1s", "1d", "1sec",
                      "1.0000000001s", "99999999999999999999h", "9999999999h", "2562048h", "2562047.9h"])
    func rejects(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test(arguments: [
        (Duration.seconds(3600), "1h"), (.seconds(300), "5m"), (.seconds(90), "90s"), (.milliseconds(250), "250ms"),
        (.milliseconds(1500), "1500ms"), (.microseconds(1500), "0.0015s"), (.zero, "0s"),
    ])
    func formats(duration: Duration, text: String) {
        #expect(formatDuration(duration) == text)
        #expect(parseDuration(text) == duration)
    }
}
