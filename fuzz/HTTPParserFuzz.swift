// libFuzzer entry point for Teal's HTTP/1.1 head parsers and chunked re-framer.
//
// Built once per target by fuzz/run.sh, with -D FUZZ_REQUEST, -D FUZZ_RESPONSE or -D FUZZ_CHUNKED,
// together with Sources/TealProxy/HTTP/{HTTPBytes,HeaderLines,RequestHead,ResponseHead,ChunkedFramer}.swift
// and the checks in Tests/TealProxyTests/FuzzRegressionTests.swift (compiled with -D TEAL_FUZZ), so
// the unit test that replays fuzz/corpus and fuzz/regressions runs exactly these checks.
// A broken invariant stops the process with its description, which libFuzzer reports as a crash.

#if FUZZ_REQUEST
let fuzzTarget = HTTPFuzzChecks.Target.request
#elseif FUZZ_RESPONSE
let fuzzTarget = HTTPFuzzChecks.Target.response
#elseif FUZZ_CHUNKED
let fuzzTarget = HTTPFuzzChecks.Target.chunked
#else
#error("build with -D FUZZ_REQUEST, -D FUZZ_RESPONSE or -D FUZZ_CHUNKED")
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        try HTTPFuzzChecks.run(fuzzTarget, input)
    } catch {
        fatalError("\(fuzzTarget) invariant broken: \(error)")
    }
    return 0
}
