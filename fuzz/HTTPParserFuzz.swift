// libFuzzer entry point for Teal's HTTP/1.1 head parsers and chunked re-framer.
//
// Built once per target by fuzz/run.sh, with -D FUZZ_REQUEST, -D FUZZ_RESPONSE or -D FUZZ_CHUNKED,
// together with Sources/TealProxy/HTTP/{HTTPBytes,HeaderLines,RequestHead,ResponseHead,ChunkedFramer}.swift
// and the checks in Tests/TealProxyTests/FuzzRegressionTests.swift (compiled with -D TEAL_FUZZ), so
// the unit test that replays fuzz/corpus and fuzz/regressions runs exactly these checks.
// A broken invariant stops the process with its description, which libFuzzer reports as a crash.
// Known, reported defects (`HTTPFuzzChecks.Finding`) are announced once and fuzzing goes on,
// unless TEAL_FUZZ_STRICT is set, which makes them crashes too.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if FUZZ_REQUEST
let fuzzTarget = HTTPFuzzChecks.Target.request
#elseif FUZZ_RESPONSE
let fuzzTarget = HTTPFuzzChecks.Target.response
#elseif FUZZ_CHUNKED
let fuzzTarget = HTTPFuzzChecks.Target.chunked
#else
#error("build with -D FUZZ_REQUEST, -D FUZZ_RESPONSE or -D FUZZ_CHUNKED")
#endif

let strictFindings = getenv("TEAL_FUZZ_STRICT") != nil
/// libFuzzer calls the entry point from one thread.
nonisolated(unsafe) var announcedFindings: Set<HTTPFuzzChecks.Finding> = []

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let findings: Set<HTTPFuzzChecks.Finding>
    do {
        findings = try HTTPFuzzChecks.run(fuzzTarget, input)
    } catch {
        fatalError("\(fuzzTarget) invariant broken: \(error)")
    }
    for finding in findings where !announcedFindings.contains(finding) || strictFindings {
        if strictFindings { fatalError("\(fuzzTarget) known finding: \(finding.rawValue)") }
        announcedFindings.insert(finding)
        fputs("KNOWN FINDING \(finding.rawValue) (not counted as a crash; TEAL_FUZZ_STRICT=1 stops on it)\n", stderr)
    }
    return 0
}
