/// The end of a hook's output (stdout and stderr together), kept while the hook runs so that a
/// chatty hook costs bounded memory, and shown in the journal when the hook fails.
///
/// Bytes are appended as they are read; only the last `byteLimit` are kept. `summary` gives the
/// last `lineLimit` non-blank lines on one line, joined by ` | `, with control characters
/// replaced by spaces and cut to `summaryLimit` characters (the end is kept: errors come last).
public struct HookOutputTail: Sendable, Hashable {
    /// Bytes kept while reading.
    public let byteLimit: Int
    /// Lines shown.
    public let lineLimit: Int
    /// Longest summary, in characters.
    public let summaryLimit: Int
    /// The kept bytes, oldest first.
    public private(set) var bytes: [UInt8] = []
    /// Whether bytes before `bytes` were dropped.
    public private(set) var truncated = false

    public init(byteLimit: Int = 4096, lineLimit: Int = 5, summaryLimit: Int = 600) {
        self.byteLimit = max(1, byteLimit)
        self.lineLimit = max(1, lineLimit)
        self.summaryLimit = max(1, summaryLimit)
    }

    /// Adds output read from the hook.
    public mutating func append(_ chunk: some Collection<UInt8>) {
        bytes.append(contentsOf: chunk)
        if bytes.count > byteLimit {
            bytes.removeFirst(bytes.count - byteLimit)
            truncated = true
        }
    }

    /// The last lines, on one line; empty when the hook printed nothing but blanks.
    public var summary: String {
        var text = String(decoding: bytes, as: UTF8.self)
        // A cut in the middle of a line leaves its end only: drop the fragment unless it is all.
        if truncated, let newline = text.firstIndex(where: \.isNewline), text[newline...].contains(where: { !$0.isWhitespace }) {
            text = String(text[text.index(after: newline)...])
        }
        let lines = text.split(whereSeparator: \.isNewline)
            .map { line in
                String(line.map { $0.isASCII && ($0.asciiValue! < 0x20 || $0.asciiValue! == 0x7F) ? " " : $0 })
                    .trimmingSpaces
            }
            .filter { !$0.isEmpty }
        var joined = lines.suffix(lineLimit).joined(separator: " | ")
        if joined.count > summaryLimit { joined = "…" + String(joined.suffix(summaryLimit - 1)) }
        return joined
    }
}
