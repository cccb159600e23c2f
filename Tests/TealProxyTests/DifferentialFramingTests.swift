import Foundation
import NIOCore
@testable import TealProxy
import TealTestSupport
import Testing

/// Differential fuzzing of the proxy's framing against h11, a strict HTTP/1.1 parser: generated
/// request streams (from clients) and answers (from instances), full of the ambiguous forms of
/// issue 14, go through the proxy's own parsing, head writing and body forwarding (the code
/// `ProxyHandler` and `UpstreamConnection` run, fed in random pieces). For every input either
/// Teal refuses it, or each message it passes on parses under h11 into exactly the message Teal
/// itself read: the same method, target, Host and body (status and body for answers), with not
/// a byte more or less.
///
/// `TEAL_DIFF_CASES` sets the number of cases of each kind (20,000 by default; HARDENING.md has
/// the 1,000,000 runs), `TEAL_DIFF_SEED` the seed.
@Suite struct DifferentialFramingTests {
    static var python: String {
        if let path = ProcessInfo.processInfo.environment["TEAL_H11_PYTHON"], !path.isEmpty { return path }
        return packageRoot.appendingPathComponent(".build/test-venv/bin/python").path
    }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var caseCount: Int { ProcessInfo.processInfo.environment["TEAL_DIFF_CASES"].flatMap(Int.init) ?? 20_000 }
    static var seed: UInt64 { ProcessInfo.processInfo.environment["TEAL_DIFF_SEED"].flatMap(UInt64.init) ?? 0x7ea1_14 }

    @Test("requests and answers Teal passes on parse under h11 into what Teal read")
    func agreesWithH11() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.python),
                     "no Python with h11 at \(Self.python): scripts/test.sh installs it (or set TEAL_H11_PYTHON)")
        var random = SplitMix64(seed: Self.seed)
        var totals = Totals()
        let batch = 25_000
        var done = 0
        while done < Self.caseCount {
            let count = min(batch, Self.caseCount - done)
            var lines: [String] = []
            lines.reserveCapacity(count * 2)
            var inputs: [String] = []
            for _ in 0..<count {
                let request = RequestCase.generate(&random)
                let requestModel = TealModel.requests(request, &random)
                totals.add(requestModel)
                lines.append(requestModel.json)
                inputs.append(request.debugText)
                let answer = AnswerCase.generate(&random)
                let answerModel = TealModel.answer(answer, &random)
                totals.add(answerModel)
                lines.append(answerModel.json)
                inputs.append(answer.debugText)
            }
            let verdicts = try await Self.runOracle(lines)
            try #require(verdicts.count == lines.count, "h11 oracle answered \(verdicts.count) of \(lines.count) cases")
            for (index, verdict) in verdicts.enumerated() where verdict != "ok" {
                totals.disagreements += 1
                if totals.disagreements <= 10 { Issue.record("\(verdict)\ninput: \(inputs[index])") }
            }
            done += count
        }
        print("differential framing: \(totals.summary)")
        #expect(totals.disagreements == 0)
        // The generator must reach both outcomes in both directions, or the run proves little.
        #expect(totals.requestsForwarded > Self.caseCount / 4 && totals.requestsRefused > Self.caseCount / 20)
        #expect(totals.answersForwarded > Self.caseCount / 4 && totals.answersRefused > Self.caseCount / 20)
        #expect(totals.rewritten > Self.caseCount / 20)
    }

    static func runOracle(_ lines: [String]) async throws -> [Substring] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-h11-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("cases.jsonl"), output = directory.appendingPathComponent("verdicts")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: false, encoding: .utf8)
        let script = packageRoot.appendingPathComponent("Tests/Oracle/h11_oracle.py").path
        let shell = "'\(python)' '\(script)' < '\(input.path)' > '\(output.path)'"
        let result = try await TealProcess.runCommand(["/bin/sh", "-c", shell], timeout: .seconds(600))
        try #require(result.status == 0, "h11 oracle failed: \(result.output)")
        return try String(contentsOf: output, encoding: .utf8).split(separator: "\n")
    }

    struct Totals {
        var requestsForwarded = 0, requestsRefused = 0, answersForwarded = 0, answersRefused = 0
        var rewritten = 0, overruns = 0, disagreements = 0

        mutating func add(_ model: TealModel.Outcome) {
            switch model.kind {
            case .requests:
                requestsForwarded += model.forwarded
                if model.refused { requestsRefused += 1 }
            case .answer:
                answersForwarded += model.forwarded
                if model.refused { answersRefused += 1 }
            }
            if model.rewritten { rewritten += 1 }
            if model.overrun { overruns += 1 }
        }

        var summary: String {
            "requests forwarded \(requestsForwarded), request streams refused or cut short \(requestsRefused), answers forwarded \(answersForwarded), "
                + "answers refused or cut short \(answersRefused), cases rewritten \(rewritten), overruns dropped \(overruns), disagreements \(disagreements)"
        }
    }
}

// MARK: - Generators

private extension SplitMix64 {
    mutating func chance(_ percent: Int) -> Bool { Int(next() % 100) < percent }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }
}

/// Pieces the generators build from: the forms of issue 14 and their valid neighbours.
enum Pieces {
    static let transferEncodings = [
        "chunked", "Chunked", "CHUNKED", " chunked ", "chunked, chunked", ",chunked", "chunked,", "identity, chunked",
        "gzip, chunked", "gzip", "chunked, gzip", "chunked;q=1", "\"chunked\"", "", "chunked\u{0B}",
    ]
    static let contentLengths = ["5", "0005", "+5", "5, 5", " 5", "0", "000", "-1", "5 5", "0x5", "99999999999999999999", "4", "6"]
    static let chunkExtensions = [
        "", ";a", ";a=b", ";a=\"q;uoted\"", ";a=\"x\\\"y\"", " ;a", "\t;a=b", ";", "; ", ";=x", ";a=", ";a=\"x", ";a b", " ", "x", ";a=b ",
    ]
    static let trailerLines = [
        "X-Sum: 1", "Grpc-Status: 0", "Content-Length: 9", "Transfer-Encoding: chunked", "Host: evil", "Content_Length: 3",
        " folded", "no colon", ": empty", "X A: 1", "X-A : 1", "Trailer: x",
    ]
    static let extraHeaders = [
        "Accept: */*", "Content_Length: 3", "Transfer_Encoding: chunked", "X_Forwarded_For: 1.2.3.4", "Connection: close",
        "Connection: keep-alive", "Connection: content-length", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAAQAAP__", "Upgrade: websocket", "Connection: Upgrade", "X-Request-Id: abc", "Via: 1.1 a",
        "X-Forwarded-For: 10.0.0.1", " folded: x", "Bad Header: x", "Expect: 100-continue", "TE: trailers", "Keep-Alive: 5",
    ]
    static let mutationBytes: [UInt8] = Array("\r\n \t;\":,0aAF_=\\".utf8) + [0, 0x7F, 0x80, 0x0B]

    static func chunkedBody(_ random: inout SplitMix64) -> String {
        var body = ""
        for _ in 0..<random.below(4) {
            let size = random.below(20) + 1
            var sizeText = String(size, radix: 16, uppercase: random.chance(20))
            if random.chance(15) { sizeText = String(repeating: "0", count: random.below(3) + 1) + sizeText }
            let ext = random.chance(30) ? random.pick(chunkExtensions) : ""
            body += sizeText + ext + "\r\n" + String(repeating: random.pick(["x", "0", "\r\n"]), count: size) + "\r\n"
        }
        body += (random.chance(10) ? "000" : "0") + (random.chance(15) ? random.pick(chunkExtensions) : "") + "\r\n"
        for _ in 0..<(random.chance(30) ? random.below(3) + 1 : 0) { body += random.pick(trailerLines) + "\r\n" }
        return body + "\r\n"
    }

    static func mutate(_ bytes: inout [UInt8], _ random: inout SplitMix64) {
        for _ in 0..<(random.below(3) + 1) where !bytes.isEmpty {
            let position = random.below(bytes.count)
            switch random.below(3) {
            case 0: bytes[position] = random.pick(mutationBytes)
            case 1: bytes.insert(random.pick(mutationBytes), at: position)
            default: bytes.remove(at: position)
            }
        }
    }
}

/// A stream of one to three requests from a client.
struct RequestCase {
    var bytes: [UInt8]
    var debugText: String { String(decoding: bytes, as: UTF8.self).debugDescription }

    static func generate(_ random: inout SplitMix64) -> RequestCase {
        var text = random.chance(10) ? "\r\n" : ""
        for _ in 0..<(random.below(3) + 1) {
            let method = random.pick(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "get"])
            let target = random.pick(["/", "/a/b?c=1", "http://right.test/p", "http://right.test", "http://u@h/x", "HTTP://H:81/q?x",
                                      "http://h?q", "*", "/%20x"])
            let version = random.chance(90) ? "HTTP/1.1" : "HTTP/1.0"
            var lines: [String] = []
            if random.chance(92) { lines.append("Host: " + random.pick(["a.test", "wrong.test", "h:8080", "[::1]:81", "", "a b"])) }
            if random.chance(4) { lines.append("Host: again.test") }
            var body = ""
            switch random.below(4) {
            case 0:
                let length = random.pick(Pieces.contentLengths)
                lines.append("Content-Length: \(length)")
                if random.chance(5) { lines.append("Content-Length: \(length)") }
                body = String(repeating: "b", count: random.below(8))
            case 1:
                lines.append("Transfer-Encoding: " + random.pick(Pieces.transferEncodings))
                if random.chance(10) { lines.append("Transfer-Encoding: " + random.pick(Pieces.transferEncodings)) }
                if random.chance(5) { lines.append("Content-Length: 3") }
                body = Pieces.chunkedBody(&random)
            default:
                break
            }
            for _ in 0..<random.below(3) { lines.insert(random.pick(Pieces.extraHeaders), at: random.below(lines.count + 1)) }
            text += "\(method) \(target) \(version)\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n" + body
        }
        var bytes = Array(text.utf8)
        if random.chance(35) { Pieces.mutate(&bytes, &random) }
        return RequestCase(bytes: bytes)
    }
}

/// What an instance sends back for one request.
struct AnswerCase {
    var isHead: Bool
    var bytes: [UInt8]
    var debugText: String { (isHead ? "HEAD: " : "GET: ") + String(decoding: bytes, as: UTF8.self).debugDescription }

    static func generate(_ random: inout SplitMix64) -> AnswerCase {
        let isHead = random.chance(15)
        var text = random.chance(8) ? "HTTP/1.1 100 Continue\r\n\r\n" : ""
        let status = random.pick([200, 200, 200, 204, 304, 404, 500, 103])
        let version = random.chance(90) ? "HTTP/1.1" : "HTTP/1.0"
        var lines = ["Content-Type: text/plain"]
        var body = ""
        switch random.below(4) {
        case 0:
            lines.append("Content-Length: " + random.pick(Pieces.contentLengths))
            body = String(repeating: "r", count: random.below(8))
        case 1, 2:
            lines.append("Transfer-Encoding: " + random.pick(Pieces.transferEncodings))
            if random.chance(8) { lines.append("Transfer-Encoding: chunked") }
            body = Pieces.chunkedBody(&random)
        default:
            body = random.chance(50) ? "until close" : ""
        }
        for _ in 0..<random.below(2) {
            lines.insert(random.pick(["Content_Length: 2", "Transfer_Encoding: chunked", "Connection: close", "Set-Cookie: a=b",
                                      "Connection: content-length", " folded", "X-A: 1"]), at: random.below(lines.count + 1))
        }
        text += "\(version) \(status) X\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n" + body
        if status == 103 { text += "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }
        if random.chance(25) { text += "HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 1\r\n\r\nS" }
        var bytes = Array(text.utf8)
        if random.chance(35) { Pieces.mutate(&bytes, &random) }
        return AnswerCase(isHead: isHead, bytes: bytes)
    }
}

// MARK: - Teal's side

/// Runs generated bytes through the proxy's own code the way the data plane does: heads parsed
/// once whole, bodies forwarded in pieces of random size (as reads deliver them).
enum TealModel {
    struct Outcome {
        enum Kind { case requests, answer }
        var kind: Kind
        var json: String
        var forwarded = 0
        var refused = false
        var rewritten = false
        var overrun = false
    }

    static let constants = ProxyHeaderBytes(viaName: "teal")

    static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    static func jsonString(_ text: String) -> String {
        String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
    }

    enum Body {
        case done(passed: [UInt8], data: [UInt8])
        case refused
        case incomplete
    }

    /// Forwards the body at the front of `input` in random pieces (all of it for a body that
    /// runs until the close): the bytes passed on and Teal's own reading of the body.
    static func forwardBody(_ framing: BodyFraming, _ input: inout [UInt8], _ random: inout SplitMix64) -> Body {
        var tracker = BodyTracker(framing)
        var reader = BodyTracker(framing)
        var passed: [UInt8] = [], data: [UInt8] = []
        var offset = 0
        while !tracker.isDone, offset < input.count {
            let take = tracker.untilClose ? input.count - offset : min(input.count - offset, random.below(12) + 1)
            var piece = ByteBuffer(bytes: input[offset..<(offset + take)])
            do {
                try piece.withUnsafeReadableBytes { raw in
                    _ = try reader.consume(raw) { if case .data(let range) = $0 { data += raw[range] } }
                }
                try tracker.forward(&piece) { passed += Array(buffer: $0) }
            } catch {
                return .refused
            }
            offset += take - piece.readableBytes
        }
        input.removeFirst(offset)
        return tracker.isDone || tracker.untilClose ? .done(passed: passed, data: data) : .incomplete
    }

    static func requests(_ request: RequestCase, _ random: inout SplitMix64) -> Outcome {
        var input = request.bytes
        var outcome = Outcome(kind: .requests, json: "")
        var records: [String] = []
        while true {
            while let first = input.first, first == HTTPBytes.cr || first == HTTPBytes.lf { input.removeFirst() }
            guard !input.isEmpty else { break }
            let parsed: (RequestHead, Int, [UInt8])? = input.withUnsafeBytes { raw in
                guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { return nil }
                guard let head = try? RequestHead.parse(raw, headEnd: end, limits: HeadLimits()) else { return (RequestHead(), -1, []) }
                var buffer = ByteBuffer()
                HeadWriter.upstreamRequest(raw, head, client: HeadWriter.Client(address: Array("192.0.2.1".utf8), isTLS: false),
                                           constants: constants, into: &buffer) { $0.writeStaticString("id") }
                return (head, end, Array(buffer: buffer))
            }
            guard let (head, end, forwardedHead) = parsed else { break }  // incomplete head: nothing forwarded
            if end < 0 || head.isConnect {
                outcome.refused = true
                break
            }
            let method = text(Array(input[0..<head.methodEnd]))
            let host = head.host.map { text(Array(input[$0])) }
            let forwardedLine = text(forwardedHead).prefix { $0 != "\r" }.split(separator: " ")
            input.removeFirst(end)
            guard case .done(let passed, let data) = forwardBody(head.framing, &input, &random) else {
                outcome.refused = true  // or incomplete: the instance never gets a whole request
                break
            }
            let body = (passed: passed, data: data)
            let forwarded = forwardedHead + body.passed
            if head.canonicalContentLength != nil || head.hostFromTarget || head.framing == .chunked && !request.bytes.contains(body.passed) {
                outcome.rewritten = true
            }
            records.append("{\"fwd\":\"\(b64(forwarded))\",\"m\":\(jsonString(method)),\"t\":\(jsonString(String(forwardedLine[1])))"
                           + ",\"h\":\(host.map(jsonString) ?? "null"),\"b\":\"\(b64(body.data))\"}")
            outcome.forwarded += 1
            if !head.keepAlive || head.wantsUpgrade { break }
        }
        outcome.json = "{\"k\":\"q\",\"reqs\":[\(records.joined(separator: ","))]}"
        return outcome
    }

    static func answer(_ answer: AnswerCase, _ random: inout SplitMix64) -> Outcome {
        var input = answer.bytes
        var outcome = Outcome(kind: .answer, json: "")
        var toClient: [UInt8] = []
        var interim = 0
        var status = 0
        var data: [UInt8] = []
        var eof = false
        while true {
            let parsed = input.withUnsafeBytes { raw -> Result<(ResponseHead, Int, [UInt8]), RequestHeadError>? in
                guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { return nil }
                do throws(RequestHeadError) {
                    let head = try ResponseHead.parse(raw, headEnd: end, requestIsHead: answer.isHead)
                    var buffer = ByteBuffer()
                    HeadWriter.clientResponse(raw, head, close: head.framing == .untilClose, constants: constants, into: &buffer)
                    return .success((head, end, Array(buffer: buffer)))
                } catch {
                    return .failure(error)
                }
            }
            guard case .success(let (head, end, forwardedHead)) = parsed, head.status != 101 else {
                // No whole, valid head: Teal answers 502 itself (what came before it, interim
                // answers, went to the client already).
                outcome.refused = true
                let error = ProxyError.invalidResponse
                toClient += Array(error.response(close: false, includeBody: !answer.isHead).utf8)
                status = error.status
                data = answer.isHead ? [] : Array(error.body.utf8)
                break
            }
            input.removeFirst(end)
            toClient += forwardedHead
            if head.isInterim {
                interim += 1
                continue
            }
            status = head.status
            guard case .done(let passed, let bodyData) = forwardBody(head.framing, &input, &random) else {
                // Cut off (or incomplete): the client connection closes mid-answer; nothing to compare.
                outcome.refused = true
                outcome.json = "{\"k\":\"skip\"}"
                return outcome
            }
            let body = (passed: passed, data: bodyData)
            toClient += body.passed
            data = body.data
            eof = head.framing == .untilClose
            outcome.overrun = !input.isEmpty
            outcome.rewritten = head.canonicalContentLength != nil || head.framing == .chunked && !answer.bytes.contains(body.passed)
            outcome.forwarded = 1
            break
        }
        outcome.json = "{\"k\":\"r\",\"m\":\"\(answer.isHead ? "HEAD" : "GET")\",\"fwd\":\"\(b64(toClient))\",\"eof\":\(eof)"
            + ",\"interim\":\(interim),\"s\":\(status),\"b\":\"\(b64(data))\"}"
        return outcome
    }
}
