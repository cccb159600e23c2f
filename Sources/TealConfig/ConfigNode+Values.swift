import TealCore

/// Readers for the value types of route files: durations, rates, splits, addresses, paths and
/// restricted text (commands, header and cookie names).
extension ConfigNode {
    /// A positive duration with a unit (`250ms`, `30s`, `5m`, `1h`, `1.5s`).
    func duration() throws(ConfigError) -> Duration {
        let text = try string("a duration like 30s")
        guard let duration = parseDuration(text) else {
            if Double(text) != nil { throw error("\(text) has no unit; add one, e.g. \(text)s or \(text)ms") }
            throw error("\"\(text)\" is not a duration; expected a number and a unit (ms, s, m or h), e.g. 250ms or 30s")
        }
        guard duration > .zero else { throw error("expected a duration greater than 0, found \(text)") }
        guard duration <= longestDuration else { throw error("\(text) is too long; the longest duration is \(formatDuration(longestDuration))") }
        return duration
    }

    /// A rate from 0 to 1, written as a percentage (`5%`, `0.5%`) or a fraction (`0.05`).
    func rate() throws(ConfigError) -> Double {
        let text = try string("a rate like 5% or 0.05")
        let value = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
        guard let value, (0...1).contains(value) else {
            throw error("\"\(text)\" is not a rate; expected a percentage from 0% to 100% (e.g. 5%) or a fraction from 0 to 1 (e.g. 0.05)")
        }
        return value
    }

    /// A split `B/G` (`2/4`) or green percentage (`25%`).
    func split() throws(ConfigError) -> Split {
        let text = try string("a split B/G, e.g. 2/4")
        guard let split = Split(parsing: text) else { throw error(whole: "\(path) \(Split.problem(parsing: text) ?? text)") }
        return split
    }

    /// An instance address, `host:port`.
    func instance() throws(ConfigError) -> InstanceAddress {
        let text = try string("a host:port string")
        guard let address = InstanceAddress(parsing: text) else {
            throw error("\"\(text)\" is not host:port, e.g. 127.0.0.1:9101")
        }
        return address
    }

    /// A request path: starts with `/`, no spaces (a query is allowed).
    func requestPath() throws(ConfigError) -> String {
        let text = try string("a path like /healthz")
        guard text.hasPrefix("/"), !text.contains(where: \.isWhitespace) else {
            throw error("\"\(text)\" is not a request path; expected one that starts with / and has no spaces, e.g. /healthz")
        }
        return text
    }

    /// Text with at least one non-space character, all of them `allowed`; `what` names it
    /// (`a header name`) and `rule` says which characters are allowed.
    func text(_ what: String, example: String, rule: String = "",
              allowed: (Character) -> Bool = { _ in true }) throws(ConfigError) -> String {
        let expected = "\(what) like \(example)"
        let value = try string(expected)
        guard value.contains(where: { !$0.isWhitespace }) else { throw mismatch(expected: expected) }
        guard value.allSatisfy(allowed) else { throw error("\"\(value)\" is not \(what); expected \(rule), e.g. \(example)") }
        return value
    }

    /// An HTTP token, as header and cookie names are: ASCII letters, digits and ``!#$%&'*+-.^_`|~``.
    func token(_ what: String, example: String) throws(ConfigError) -> String {
        try text(what, example: example, rule: "letters, digits and !#$%&'*+-.^_`|~ only") {
            $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+-.^_`|~".contains($0))
        }
    }
}
