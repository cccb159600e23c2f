/// Parses a duration written with a unit: `250ms`, `30s`, `5m`, `1h`, or with a decimal fraction
/// of up to 9 digits, `1.5s`.
///
/// Returns `nil` for a bare number (no unit), a negative number, anything else, or a value too
/// large to represent. Zero (`0s`) is returned as `.zero`; callers that need a positive duration
/// check for it. The conversion is exact to the nanosecond (no floating point).
public func parseDuration(_ text: some StringProtocol) -> Duration? {
    let text = Substring(text)
    // `ms` first: `s` and `m` are suffixes of it.
    let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]
    guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else { return nil }
    let parts = text.dropLast(unit.suffix.count).split(separator: ".", omittingEmptySubsequences: false)
    let whole = parts[0]
    let fraction = parts.count == 2 ? parts[1] : ""
    guard parts.count <= 2, !whole.isEmpty, parts.count == 1 || !fraction.isEmpty, fraction.count <= 9,
          (whole + fraction).allSatisfy({ $0.isASCII && $0.isNumber }),
          let wholeValue = Int64(whole), let fractionValue = Int64(fraction.isEmpty ? "0" : fraction) else { return nil }
    var divisor: Int64 = 1
    for _ in fraction { divisor *= 10 }
    // The whole part and the fraction are scaled apart: scaled together (353131420070 for
    // `353.131420070s`), a modest duration with nine decimals overflowed. The fraction's share is
    // below one unit, so it fits; the double-width product keeps it exact.
    let (wholeNanoseconds, overflow) = wholeValue.multipliedReportingOverflow(by: unit.nanoseconds)
    let fractionNanoseconds = divisor.dividingFullWidth(fractionValue.multipliedFullWidth(by: unit.nanoseconds)).quotient
    let (total, sumOverflow) = wholeNanoseconds.addingReportingOverflow(fractionNanoseconds)
    guard !overflow, !sumOverflow else { return nil }
    return .nanoseconds(total)
}

/// The longest duration a route file or an API request may give (8760h, a year): longer ones are
/// refused, so no timer or deadline arithmetic ever sees a value near its limits.
public let longestDuration = Duration.seconds(365 * 86_400)

/// Writes a duration the way `parseDuration` reads it, in the largest unit that is exact:
/// `1h`, `5m`, `30s`, `250ms`, otherwise fractional seconds (`0.0015s`). Sub-nanosecond parts
/// are dropped.
public func formatDuration(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    let (nanoseconds, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
    // Beyond Int64 nanoseconds (about 292 years) whole seconds are exact enough.
    guard !overflow, !carry else { return "\(seconds)s" }
    guard nanoseconds != 0 else { return "0s" }
    let units: [(suffix: String, nanoseconds: Int64)] = [
        ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000),
    ]
    if let unit = units.first(where: { nanoseconds % $0.nanoseconds == 0 }) {
        return "\(nanoseconds / unit.nanoseconds)\(unit.suffix)"
    }
    let sign = nanoseconds < 0 ? "-" : ""
    let magnitude = nanoseconds.magnitude
    var fraction = String(magnitude % 1_000_000_000)
    fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
    while fraction.hasSuffix("0") { fraction.removeLast() }
    return "\(sign)\(magnitude / 1_000_000_000).\(fraction)s"
}
