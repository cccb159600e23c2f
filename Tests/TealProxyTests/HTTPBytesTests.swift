@testable import TealProxy
import Testing

@Suite struct HTTPBytesTests {
    private func headEnd(_ text: String, from: Int = 0) -> Int? {
        Array(text.utf8).withUnsafeBytes { HTTPBytes.findHeadEnd($0, from: from) }
    }

    @Test func findsTheEndOfAHead() {
        let head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(headEnd(head) == head.utf8.count)
        #expect(headEnd(head + "body\r\n\r\nmore") == head.utf8.count)
        #expect(headEnd("GET / HTTP/1.1\r\nHost: h\r\n") == nil)
        #expect(headEnd("GET / HTTP/1.1\r\nHost: h\r\n\r") == nil)
        #expect(headEnd("") == nil)
        #expect(headEnd("\r\n\r") == nil)
        #expect(headEnd("\r\n\r\n") == 4)
    }

    @Test func bareLineFeedsEndTheHeadForTheParserToRefuse() {
        #expect(headEnd("GET / HTTP/1.1\nHost: h\n\nrest") == "GET / HTTP/1.1\nHost: h\n\n".utf8.count)
        #expect(headEnd("GET / HTTP/1.1\r\nHost: h\r\n\nrest") == "GET / HTTP/1.1\r\nHost: h\r\n\n".utf8.count)
    }

    /// The proxy scans again from `scanned - 3` as bytes arrive; the end must be found exactly once
    /// the last byte of the terminator is there, whatever the arrival pattern.
    @Test func incrementalScanningFindsTheSameEnd() {
        let bytes = Array("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET".utf8)
        let end = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n".utf8.count
        for step in 1...7 {
            var scanned = 0
            var available = 0
            var found: Int?
            while found == nil && available < bytes.count {
                available = min(bytes.count, available + step)
                found = bytes[..<available].withUnsafeBytes { HTTPBytes.findHeadEnd($0, from: max(0, scanned - 3)) }
                if found == nil { scanned = available }
            }
            #expect(found == end, "step \(step)")
            #expect(available - step < end, "found late with step \(step)")
        }
    }

    @Test(arguments: [
        ("0", 0 as Int64?), ("5", 5), ("0005", 5), ("123456789012345678", 123_456_789_012_345_678),
        ("1234567890123456789", nil), ("", nil), ("-1", nil), ("+1", nil), ("1a", nil), (" 1", nil), ("1.0", nil),
    ])
    func contentLength(text: String, value: Int64?) {
        let bytes = Array(text.utf8)
        let parsed = bytes.withUnsafeBytes { HTTPBytes.parseContentLength($0, 0..<bytes.count) }
        #expect(parsed == value)
    }

    @Test(arguments: [
        ("a, b ,c", ["a", "b", "c"]), ("  a  ", ["a"]), (",,a,,", ["a"]), ("", []), (" , ", []),
        ("keep-alive,\tUpgrade", ["keep-alive", "Upgrade"]),
    ])
    func listElements(text: String, elements: [String]) {
        let bytes = Array(text.utf8)
        var found: [String] = []
        bytes.withUnsafeBytes { raw in
            HTTPBytes.forEachListElement(raw, 0..<raw.count) { found.append(String(decoding: raw[$0], as: UTF8.self)) }
        }
        #expect(found == elements)
    }
}
