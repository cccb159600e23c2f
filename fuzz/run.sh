#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of Teal's HTTP/1.1 head parsers and chunked re-framer.
#
#   fuzz/run.sh [RUNS]        # default 1000000 runs per target
#
# Environment: SEED (libFuzzer -seed, default 1), MAX_TOTAL_TIME (seconds per target, default
# 1800), SWIFTC (default: swiftc on PATH, else /opt/swift/usr/bin/swiftc).
# Builds into .build-fuzz/ (git-ignored); fuzzes a temporary copy of fuzz/corpus/<target>, so the
# seeds stay as they are; crash inputs are written to .build-fuzz/artifacts/<target>/.
# Exits non-zero if any target crashes or breaks an invariant.
set -euo pipefail

RUNS="${1:-1000000}"
SEED="${SEED:-1}"
MAX_TOTAL_TIME="${MAX_TOTAL_TIME:-1800}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${SWIFTC:-}" ]]; then
    if command -v swiftc >/dev/null 2>&1; then SWIFTC=swiftc; else SWIFTC=/opt/swift/usr/bin/swiftc; fi
fi
# libFuzzer's runtime comes with the toolchain's clang resource directory.
RESOURCE_DIR="$(dirname "$(command -v "$SWIFTC")")/../lib/clang"
if ! ls "$RESOURCE_DIR"/*/lib/*/libclang_rt.fuzzer-*.a >/dev/null 2>&1; then
    echo "libFuzzer runtime (libclang_rt.fuzzer) not found under $RESOURCE_DIR" >&2
    exit 2
fi

# A crash report from Swift's own backtracer takes long under ASan; libFuzzer prints the stack.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"

OUT=".build-fuzz"
mkdir -p "$OUT"
HTTP=Sources/TealProxy/HTTP
SOURCES=(
    "$HTTP/HTTPBytes.swift" "$HTTP/HeaderLines.swift" "$HTTP/RequestHead.swift"
    "$HTTP/ResponseHead.swift" "$HTTP/ChunkedFramer.swift"
    Tests/TealProxyTests/FuzzRegressionTests.swift fuzz/HTTPParserFuzz.swift
)
TARGETS=(request response chunked)

for target in "${TARGETS[@]}"; do
    flag="FUZZ_$(echo "$target" | tr '[:lower:]' '[:upper:]')"
    echo "== building $OUT/fuzz-$target"
    # ld.gold warns "Cannot export local symbol" for every Swift symbol; those lines are dropped.
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -module-name TealFuzz \
        -D TEAL_FUZZ -D "$flag" "${SOURCES[@]}" -o "$OUT/fuzz-$target" 2>&1 \
        | { grep -v "Cannot export local symbol" || true; }
    [[ -x "$OUT/fuzz-$target" ]] || { echo "build of $target failed" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/teal-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
failed=0
summary=()
for target in "${TARGETS[@]}"; do
    corpus="$WORK/corpus-$target"
    artifacts="$OUT/artifacts/$target"
    rm -rf "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp fuzz/corpus/"$target"/* "$corpus"/
    log="$OUT/fuzz-$target.log"
    echo "== fuzzing $target: -runs=$RUNS -seed=$SEED -max_total_time=$MAX_TOTAL_TIME (log: $log)"
    status=0
    "$OUT/fuzz-$target" "$corpus" -runs="$RUNS" -seed="$SEED" -max_total_time="$MAX_TOTAL_TIME" \
        -dict=fuzz/http.dict -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    # libFuzzer stops at the first crash, leak, timeout or out-of-memory and writes its input here.
    crashes="$(find "$artifacts" -type f | wc -l)"
    if [[ $status -ne 0 || $crashes -ne 0 ]]; then
        failed=1
        crashes=$(( crashes > 0 ? crashes : 1 ))
        grep -E 'Fatal error|ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    fi
    line="$target: runs ${runs:-?}, ${speed:-?} exec/s, cov ${cov:-?}, crashes $crashes/${runs:-?}, exit $status"
    summary+=("$line")
    echo "$line"
done

echo "== summary (seed $SEED, max_len 4096, dict fuzz/http.dict)"
printf '%s\n' "${summary[@]}"
exit "$failed"
