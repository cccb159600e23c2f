/// The share of traffic that blue and green get, as the ratio `blue:green` (`2/4` sends 2 of every
/// 6 requests to blue and 4 to green). `6/0` is all blue, `0/6` all green; `0/0` is not a split.
public struct Split: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Blue's weight, 0 or more.
    public let blue: Int
    /// Green's weight, 0 or more.
    public let green: Int

    /// The largest weight either side may have; keeps precomputed sequences small.
    public static let maxWeight = 1000

    /// Creates a split; `nil` when a weight is negative, above `maxWeight`, or both are zero.
    public init?(blue: Int, green: Int) {
        // Ranges first: the sum of two unchecked weights can overflow.
        guard (0...Self.maxWeight).contains(blue), (0...Self.maxWeight).contains(green), blue + green > 0 else {
            return nil
        }
        self.blue = blue
        self.green = green
    }

    /// Parses `B/G` (`2/4`) or a green percentage (`25%`, which is `75/25`).
    public init?(parsing text: some StringProtocol) {
        let trimmed = text.trimmingSpaces
        if trimmed.hasSuffix("%") {
            let digits = trimmed.dropLast()
            guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let percent = Int(digits), (0...100).contains(percent) else { return nil }
            self.init(blue: 100 - percent, green: percent)
            return
        }
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }), let blue = Int(parts[0]), let green = Int(parts[1]) else { return nil }
        self.init(blue: blue, green: green)
    }

    /// Why `text` is not a split, in words for an error message (`"0/0" gives neither side
    /// weight…`); `nil` when it is one.
    public static func problem(parsing text: some StringProtocol) -> String? {
        guard Split(parsing: text) == nil else { return nil }
        let trimmed = text.trimmingSpaces
        if trimmed.hasSuffix("%"), !trimmed.dropLast().isEmpty, trimmed.dropLast().allSatisfy(\.isASCIIDigit) {
            return "\"\(text)\" is above 100%: a green percentage is 0% to 100%, e.g. 25%"
        }
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }) {
            if parts.allSatisfy({ $0.allSatisfy { $0 == "0" } }) {
                return "\"\(text)\" gives neither side weight: at least one side must have weight, e.g. 1/0 or 2/4"
            }
            return "\"\(text)\" has a weight above \(maxWeight): weights are 0 to \(maxWeight), e.g. 2/4"
        }
        return "\"\(text)\" is not B/G, e.g. 2/4, or a green percentage, e.g. 25%"
    }

    private enum CodingKeys: String, CodingKey { case blue, green }

    /// Decodes `{"blue": B, "green": G}`, refusing what `init?(blue:green:)` refuses.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let blue = try container.decode(Int.self, forKey: .blue), green = try container.decode(Int.self, forKey: .green)
        guard let split = Split(blue: blue, green: green) else {
            throw DecodingError.dataCorruptedError(forKey: .blue, in: container, debugDescription: "\(blue)/\(green) is not a valid split")
        }
        self = split
    }

    /// All traffic to blue, in the smallest terms (`1/0`): for routes that state no other.
    /// Prefer `allBlue(scale:)` (or `RolloutPolicy.allBlue`, `Route.allBlue`) to show all blue in
    /// the terms of the route's plan; the picker routes `1/0` and `6/0` the same.
    public static let allBlue = Split(blue: 1, green: 0)!

    /// All traffic to blue, written with `scale` as blue's weight (`allBlue(scale: 6)` is `6/0`),
    /// so a route planned as `6/0 → 2/4 → 0/6` goes back to `6/0`, not `1/0`. `scale` is clamped
    /// to `1...maxWeight`.
    public static func allBlue(scale: Int) -> Split {
        Split(blue: min(max(scale, 1), maxWeight), green: 0)!
    }

    /// Whether green gets nothing (`1/0`, `6/0`).
    public var isAllBlue: Bool { green == 0 }

    /// The sum of both weights: the terms the split is written in (`6` for `2/4`).
    public var scale: Int { blue + green }

    /// Green's share of requests, from 0 to 1.
    public var greenFraction: Double { Double(green) / Double(blue + green) }

    public var description: String { "\(blue)/\(green)" }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        var s = Substring(self)
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}
