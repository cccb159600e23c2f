import Foundation
import Testing
import TealTestSupport
@testable import TealAdmin

@Suite("RFC 3339 date-time reader")
struct InternetDateTimeTests {
    @Test("known instants, with and without fractional seconds and offsets")
    func known() throws {
        let cases: [(String, Double)] = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01t00:00:00z", 0),
            ("2026-11-27T10:00:00Z", 1_795_773_600),
            ("2026-11-27T10:00:00.123Z", 1_795_773_600.123),
            ("2026-11-27T10:00:00.5+01:00", 1_795_770_000.5),
            ("2026-11-27T10:00:00.000000001-19:34", 1_795_773_600 + 19 * 3600 + 34 * 60 + 1e-9),
            ("2026-11-27T10:00:00.1234567891234Z", 1_795_773_600.123456789),
            ("2024-02-29T23:59:60Z", 1_709_251_200),
            ("2000-03-01T00:00:00Z", 951_868_800),
            ("1969-12-31T23:59:59Z", -1),
            ("0000-01-01T00:00:00Z", -62_167_219_200),
            ("9999-12-31T23:59:59+23:59", 253_402_300_799 - 86_340),
        ]
        for (text, seconds) in cases {
            let date = try #require(InternetDateTime.parse(text), "\(text)")
            #expect(abs(date.timeIntervalSince1970 - seconds) < 1e-6, "\(text): \(date.timeIntervalSince1970)")
        }
    }

    @Test("what is not RFC 3339 date-time is refused")
    func refused() {
        for text in ["", "yesterday", "2026-11-27", "2026-11-27T10:00Z", "2026-11-27T10:00:00", "2026-11-27 10:00:00Z",
                     "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00ZZ", "2026-11-27T10:00:00+0100", "2026-11-27T10:00:00+24:00",
                     "2026-11-27T10:00:00+01:60", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z",
                     "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-27T24:00:00Z", "2026-11-27T10:60:00Z",
                     "2026-11-27T10:00:61Z", "+2026-11-27T10:00:00Z", "20261-11-27T10:00:00Z", "2026-1-27T10:00:00Z",
                     "２０２６-11-27T10:00:00Z", " 2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z "] {
            #expect(InternetDateTime.parse(text) == nil, "\(text)")
        }
    }

    @Test("agrees with Foundation's ISO8601DateFormatter on 2,000 seeded random instants and offsets")
    func agreesWithFoundation() throws {
        var generator = SplitMix64(seed: 13)
        for _ in 0..<2000 {
            // 1600-01-01 to 9999-12-31: Foundation's calendar is Julian before 1582.
            let seconds = Int64(generator.next() % 265_078_396_800) - 11_676_096_000
            let milliseconds = Int64(generator.next() % 1000)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            formatter.timeZone = TimeZone(secondsFromGMT: Int(generator.next() % 1681) * 60 - 14 * 3600)
            let date = Date(timeIntervalSince1970: Double(seconds) + Double(milliseconds) / 1000)
            let text = formatter.string(from: date)
            let parsed = try #require(InternetDateTime.parse(text), "\(text)")
            let expected = try #require(formatter.date(from: text))
            #expect(abs(parsed.timeIntervalSince1970 - expected.timeIntervalSince1970) < 1e-3, "\(text)")
        }
    }
}
