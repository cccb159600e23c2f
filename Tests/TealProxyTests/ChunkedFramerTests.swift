@testable import TealProxy
import Testing

/// The outcome of feeding parts of a body to a framer or tracker.
private enum Feed: Equatable, CustomStringConvertible {
    /// Bytes that belong to the body, and whether its end was found.
    case consumed(Int, done: Bool)
    case invalid

    var description: String {
        switch self {
        case .consumed(let count, let done): "consumed \(count) done \(done)"
        case .invalid: "invalid"
        }
    }
}

private func feed(_ parts: [[UInt8]], into framer: inout ChunkedFramer) -> Feed {
    var total = 0
    for part in parts {
        do {
            total += try part.withUnsafeBytes { try framer.consume($0) }
        } catch {
            return .invalid
        }
    }
    return .consumed(total, done: framer.isDone)
}

private func feedChunked(_ parts: [[UInt8]]) -> Feed {
    var framer = ChunkedFramer()
    return feed(parts, into: &framer)
}

private func feed(_ parts: [[UInt8]], framing: BodyFraming) -> Feed {
    var tracker = BodyTracker(framing)
    var total = 0
    for part in parts {
        do {
            total += try part.withUnsafeBytes { try tracker.consume($0) }
        } catch {
            return .invalid
        }
    }
    return .consumed(total, done: tracker.isDone)
}

private let validBodies: [String] = [
    "0\r\n\r\n",
    "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
    "1\r\na\r\n0\r\n\r\n",
    "A\r\n0123456789\r\n0\r\n\r\n",
    "a\r\n0123456789\r\n0\r\n\r\n",
    "0004\r\nabcd\r\n0000\r\n\r\n",
    "3;name=value\r\nabc\r\n0;last\r\n\r\n",
    "3;a;b=\"q;uoted\"\r\nabc\r\n0\r\n\r\n",
    "3 ;a=b\r\nabc\r\n0\t;x\r\n\r\n",
    "0\r\nExpires: never\r\n\r\n",
    "2\r\nhi\r\n0\r\nA: 1\r\nB: two words\r\n\r\n",
    "6\r\n\r\n\r\n\r\n\r\n0\r\n\r\n",  // data that looks like CRLFs
    "1F4\r\n" + String(repeating: "z", count: 500) + "\r\n0\r\n\r\n",
]

private let invalidBodies: [String] = [
    "g\r\n",                     // non-hex size
    "4x\r\nabcd\r\n",            // junk after size digits
    "-4\r\nabcd\r\n",
    "0x4\r\nabcd\r\n",
    "\r\n",                      // empty size line
    ";ext\r\n",                  // extension without size
    " 4\r\nabcd\r\n",            // leading space
    "4\r\nWikiX\r\n",            // missing CRLF after data
    "4\r\nWiki\rX",
    "4\r\nWiki\n\r\n",
    "4\r\nWiki\r\r\n",
    "4\nWiki\r\n",               // bare LF after size
    "4\r\rWiki\r\n",
    "0000000000000000\r\n",      // 16 hex digits
    "10000000000000000\r\n",     // 17 hex digits
    "ffffffffffffffff\r\n",
    "4;a\u{1}b\r\nWiki\r\n",     // control character in an extension
    "0\r\nA: 1\n\r\n",           // bare LF in a trailer
    "0\r\nA: \u{0}\r\n\r\n",     // NUL in a trailer
    "0\r\n\rx",                  // CR without LF ending the trailers
]

/// Bytes that follow the body on the connection (a pipelined request).
private let next = Array("GET /next HTTP/1.1\r\nHost: h\r\n\r\n".utf8)

@Suite struct ChunkedFramerTests {
    @Test(arguments: validBodies)
    func wholeBodyEndsExactly(body: String) {
        let bytes = Array(body.utf8)
        #expect(feedChunked([bytes]) == .consumed(bytes.count, done: true))
        #expect(feedChunked([bytes + next]) == .consumed(bytes.count, done: true))
    }

    /// Feeding the body and the next request in two parts, split at every byte, finds the same end.
    @Test(arguments: validBodies)
    func everyTwoPartSplit(body: String) {
        let bytes = Array(body.utf8)
        let stream = bytes + next
        var wrong: [Int] = []
        for split in 0...stream.count {
            let result = feedChunked([Array(stream[..<split]), Array(stream[split...])])
            if result != .consumed(bytes.count, done: true) { wrong.append(split) }
        }
        #expect(wrong.isEmpty, "wrong result when split at \(wrong)")
    }

    @Test(arguments: validBodies)
    func byteByByte(body: String) {
        let bytes = Array(body.utf8)
        let stream = bytes + next
        var framer = ChunkedFramer()
        var consumed = 0
        for (index, byte) in stream.enumerated() {
            let wasDone = framer.isDone
            do {
                let used = try [byte].withUnsafeBytes { try framer.consume($0) }
                consumed += used
                #expect(used == (index < bytes.count ? 1 : 0), "byte \(index)")
            } catch {
                Issue.record("invalid at byte \(index)")
                return
            }
            // The end is found exactly at the body's last byte, not before.
            #expect(framer.isDone == (index >= bytes.count - 1), "byte \(index)")
            #expect(!wasDone || framer.isDone)
        }
        #expect(consumed == bytes.count)
    }

    /// Three parts split at every pair of positions (the body only, without extra bytes).
    @Test func everyThreePartSplit() {
        let bytes = Array("4;e=1\r\nWiki\r\n5\r\npedia\r\n0\r\nT: x\r\n\r\n".utf8)
        var wrong = 0
        for first in 0...bytes.count {
            for second in first...bytes.count {
                let parts = [Array(bytes[..<first]), Array(bytes[first..<second]), Array(bytes[second...])]
                if feedChunked(parts) != .consumed(bytes.count, done: true) { wrong += 1 }
            }
        }
        #expect(wrong == 0)
    }

    @Test func incompleteBodyIsNotDone() {
        let bytes = Array("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n".utf8)
        for length in 0..<bytes.count {
            #expect(feedChunked([Array(bytes[..<length])]) == .consumed(length, done: false), "prefix \(length)")
        }
    }

    @Test func largestSizeAcceptedIsFifteenHexDigits() {
        var framer = ChunkedFramer()
        let head = Array("fffffffffffffff\r\n".utf8)
        let data = [UInt8](repeating: 0x61, count: 4096)
        #expect(feed([head, data], into: &framer) == .consumed(head.count + data.count, done: false))
        #expect(framer.state == .data)
    }

    @Test func dataBytesAreNotInterpreted() {
        // A data run that contains what would be a terminating chunk.
        let body = Array(("A\r\n" + "0\r\n\r\n0\r\n\r\n" + "\r\n0\r\n\r\n").utf8)
        #expect(feedChunked([body + next]) == .consumed(body.count, done: true))
    }

    @Test(arguments: invalidBodies)
    func invalidBodiesAreRefused(body: String) {
        let bytes = Array(body.utf8)
        #expect(feedChunked([bytes]) == .invalid, "\(body.debugDescription)")
        #expect(feedChunked(bytes.map { [$0] }) == .invalid, "\(body.debugDescription) byte by byte")
    }

    @Test(arguments: invalidBodies)
    func invalidAtEverySplit(body: String) {
        let bytes = Array(body.utf8)
        var wrong: [Int] = []
        for split in 0...bytes.count where feedChunked([Array(bytes[..<split]), Array(bytes[split...])]) != .invalid {
            wrong.append(split)
        }
        #expect(wrong.isEmpty, "\(body.debugDescription) accepted when split at \(wrong)")
    }

    @Test func consumingAfterTheEndTakesNothing() {
        var framer = ChunkedFramer()
        #expect(feed([Array("0\r\n\r\n".utf8)], into: &framer) == .consumed(5, done: true))
        #expect(feed([next], into: &framer) == .consumed(0, done: true))
    }
}

@Suite struct BodyTrackerTests {
    @Test func lengthConsumesExactlyN() {
        let bytes = [UInt8](repeating: 0x41, count: 12)
        #expect(feed([bytes], framing: .length(5)) == .consumed(5, done: true))
        #expect(feed([Array(bytes[..<3])], framing: .length(5)) == .consumed(3, done: false))
        #expect(feed([Array(bytes[..<3]), bytes], framing: .length(5)) == .consumed(5, done: true))
        #expect(feed([[], Array(bytes[..<5]), bytes], framing: .length(5)) == .consumed(5, done: true))
        #expect(feed(bytes.map { [$0] }, framing: .length(7)) == .consumed(7, done: true))
    }

    @Test func lengthSplitAtEveryPoint() {
        let stream = [UInt8](repeating: 0x42, count: 40) + next
        for split in 0...stream.count {
            #expect(feed([Array(stream[..<split]), Array(stream[split...])], framing: .length(40)) == .consumed(40, done: true))
        }
    }

    @Test func largeLengthStaysOpen() {
        var tracker = BodyTracker(.length(1 << 40))
        #expect(!tracker.isDone)
        let chunk = [UInt8](repeating: 0, count: 65_536)
        for _ in 0..<4 {
            let used = try? chunk.withUnsafeBytes { try tracker.consume($0) }
            #expect(used == 65_536)
        }
        #expect(!tracker.isDone)
    }

    @Test func noneIsDoneAtOnce() {
        let tracker = BodyTracker(.none)
        #expect(tracker.isDone)
        #expect(feed([next], framing: .none) == .consumed(0, done: true))
        #expect(feed([next], framing: .length(0)) == .consumed(0, done: true))
        #expect(BodyTracker(.length(0)).isDone)
    }

    @Test func untilCloseTakesEverything() {
        let tracker = BodyTracker(.untilClose)
        #expect(tracker.untilClose)
        #expect(!tracker.isDone)
        #expect(feed([next, next, []], framing: .untilClose) == .consumed(next.count * 2, done: false))
    }

    @Test func chunkedThroughTheTracker() {
        let body = Array("3\r\nabc\r\n0\r\n\r\n".utf8)
        #expect(feed([body + next], framing: .chunked) == .consumed(body.count, done: true))
        #expect(feed([Array(body[..<4]), Array(body[4...]) + next], framing: .chunked) == .consumed(body.count, done: true))
        #expect(feed([Array("zz\r\n".utf8)], framing: .chunked) == .invalid)
        #expect(!BodyTracker(.chunked).isDone)
        #expect(!BodyTracker(.chunked).untilClose)
    }
}
