#!/usr/bin/env bash
# Chunked bodies through the proxies: req/s, latency and the proxy's CPU time per request for
# answers and uploads with chunked bodies, in canonical form and in forms a proxy has to
# rewrite (chunk extensions, leading zeros, upper-case hex). The backend is chunked_backend.c
# (one epoll thread on six ports), so nginx, which cannot send chunk extensions, is not needed.
# Teal binaries are given like run.sh's: TEAL_BINS="before=PATH after=PATH" or TEAL_BIN.
# Writes the "## Chunked bodies" section of benchmarks/RESULTS.md; raw output goes to
# benchmarks/out/chunked-*/. See benchmarks/README.md for the cases and variables.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DURATION=${DURATION:-8}      # seconds per measured wrk run
ROUNDS=${ROUNDS:-3}          # rounds over all cases and targets
CONNS=${CONNS:-64}           # wrk connections
WARMUP=${WARMUP:-2}          # unmeasured seconds per case and target before round 1
CHUNKS=${CHUNKS:-4}          # chunks per body
CHUNK_SIZE=${CHUNK_SIZE:-3000} # bytes per chunk (3000 = 0xbb8: letters in the hex size)
CASES=${CASES:-"cl canonical ext upload upload-ext"}
REFS=${REFS-"nginx haproxy"} # reference proxies measured too (set empty for Teal only)
for v in DURATION ROUNDS CONNS WARMUP CHUNKS CHUNK_SIZE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0 && CHUNKS > 0 && CHUNK_SIZE > 0)) || die "DURATION, ROUNDS, CONNS, CHUNKS, CHUNK_SIZE must be > 0"
for c in $CASES; do
  [[ $c =~ ^(cl|canonical|ext|upload|upload-ext)$ ]] || die "unknown case '$c'"
done
for t in $REFS; do
  [[ $t == nginx || $t == haproxy ]] || die "REFS may name nginx and haproxy only (got '$t')"
done
# One worker each; nginx without a master so the process measured is the one that works.
export WORKERS=1 NGINX_SINGLE_PROCESS=1

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_REL="benchmarks/out/chunked-$STAMP"
OUT="$PKG_ROOT/$OUT_REL"
bench_init "$OUT"
log "output directory: $OUT_REL"
ensure_tools wrk nginx haproxy curl gcc python3
teal_targets || die "no Teal binary"
read -r -a refs <<<"$REFS"
TARGETS=("${refs[@]}" "${TEAL_TARGETS[@]}")

# The backend: chunked_backend.c on six ports, as blue b1-b3 and green b4-b6 of lib.sh's layout.
BACKEND_BIN=$BENCH_TMP/chunked_backend
gcc -O2 -Wall -Wextra -o "$BACKEND_BIN" "$BENCH_DIR/chunked_backend.c" || die "chunked_backend.c did not compile"
reserve_ports $((6 + 2 + 2 * ${#TEAL_TARGETS[@]}))
BACKEND_PORTS=()
for i in 0 1 2 3 4 5; do take_port port; BACKEND_PORTS+=("$port"); done
BLUE_ADDRS=("127.0.0.1:${BACKEND_PORTS[0]}" "127.0.0.1:${BACKEND_PORTS[1]}" "127.0.0.1:${BACKEND_PORTS[2]}")
GREEN_ADDRS=("127.0.0.1:${BACKEND_PORTS[3]}" "127.0.0.1:${BACKEND_PORTS[4]}" "127.0.0.1:${BACKEND_PORTS[5]}")
start_bg chunked-backend "$BACKEND_BIN" "$CHUNKS" "$CHUNK_SIZE" "${BACKEND_PORTS[@]}"
BACKEND_PID=$STARTED_PID
for port in "${BACKEND_PORTS[@]}"; do
  wait_http "http://127.0.0.1:$port/healthz" "$BACKEND_PID" 10 || die "chunked_backend does not answer on $port"
done
log "chunked_backend up on ${BACKEND_PORTS[*]} ($CHUNKS chunks of $CHUNK_SIZE bytes)"

declare -A PORT PID
take_port 'PORT[nginx]'
take_port 'PORT[haproxy]'
for t in "${refs[@]}"; do
  if [[ $t == nginx ]]; then
    start_nginx_proxy "${PORT[nginx]}" || die "nginx did not start"
    PID[nginx]=$NGINX_PID
  else
    start_haproxy "${PORT[haproxy]}" || die "HAProxy did not start"
    PID[haproxy]=$HAPROXY_PID
  fi
done
for t in "${TEAL_TARGETS[@]}"; do
  take_port "PORT[$t]"
  take_port admin_port
  TEAL_BIN=${TEAL_TARGET_BIN[$t]} start_teal "${PORT[$t]}" "$admin_port" || die "$t did not start"
  PID[$t]=$TEAL_PID
done

# Upload bodies (canonical and rewritten form) and the wrk script that sends them raw: wrk's own
# request builder would add Content-Length.
for form in canonical ext; do
  python3 "$BENCH_TOOL" chunked-body "$CHUNKS" "$CHUNK_SIZE" "$form" >"$OUT/upload-$form.body"
done
cat >"$OUT/upload.lua" <<'EOF'
-- POST /upload with Transfer-Encoding: chunked; the body comes from UPLOAD_BODY (a file).
local f = assert(io.open(os.getenv("UPLOAD_BODY"), "rb"))
local body = f:read("*a")
f:close()
local raw = "POST /upload HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
  "\r\nTransfer-Encoding: chunked\r\n\r\n" .. body
function request() return raw end
EOF
EXPECTED_LEN=$((CHUNKS * CHUNK_SIZE))
upload_body() { # upload_body CASE: the body file of an upload case
  if [[ $1 == upload ]]; then echo "$OUT/upload-canonical.body"; else echo "$OUT/upload-ext.body"; fi
}

# Check every case through every target before measuring: the body arrives whole and unchanged,
# and the client's view of the first chunk line is logged (it shows which proxies rewrite it).
CHECKS="$OUT/checks.txt"
: >"$CHECKS"
ref_sum=$(curl -s --max-time 5 "http://127.0.0.1:${BACKEND_PORTS[0]}/cl" | sha256sum | cut -c1-16)
for t in "${TARGETS[@]}"; do
  for c in $CASES; do
    url="http://127.0.0.1:${PORT[$t]}"
    case $c in
      cl | canonical | ext)
        sum=$(curl -s --max-time 5 "$url/$c" | sha256sum | cut -c1-16)
        first=$(curl -s --raw --max-time 5 "$url/$c" | head -c 16 | head -n 1 | tr -d '\r' || true)
        [[ $sum == "$ref_sum" ]] || die "$t $c: the body differs from the backend's (sha256 $sum, want $ref_sum)"
        echo "$t $c: body ok; first line at the client: '$first'" >>"$CHECKS"
        ;;
      upload | upload-ext)
        got=$(python3 "$BENCH_TOOL" chunked-upload "${PORT[$t]}" "$(upload_body "$c")" 2>&1 || true)
        [[ $got == "200 $EXPECTED_LEN" ]] || die "$t $c: upload answered '$got', want '200 $EXPECTED_LEN'"
        echo "$t $c: upload ok (backend read $EXPECTED_LEN body bytes)" >>"$CHECKS"
        ;;
    esac
  done
done
log "checks passed:"
sed 's/^/  /' "$CHECKS" >&2

# run_wrk TARGET CASE SECONDS OUTFILE
run_wrk() {
  local url="http://127.0.0.1:${PORT[$1]}" c=$2 args=()
  case $c in
    cl | canonical | ext) url+="/$c" ;;
    upload | upload-ext) args=(-s "$OUT/upload.lua") ;;
  esac
  UPLOAD_BODY=$(upload_body "$c") timeout $(($3 + 60)) wrk -t1 -c"$CONNS" -d"$3"s --latency "${args[@]}" "$url/" >"$4" 2>&1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

if ((WARMUP > 0)); then
  for c in $CASES; do
    for t in "${TARGETS[@]}"; do
      run_wrk "$t" "$c" "$WARMUP" "$OUT/warmup-$c-$t.txt" || log "warm-up $c $t failed"
    done
  done
fi

RUNS="$OUT/runs.tsv"
: >"$RUNS"
n=${#TARGETS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do
    # Rotate the order of the targets each round so none always runs first.
    for ((k = 0; k < n; k++)); do
      t=${TARGETS[(k + r - 1) % n]}
      is_running "${PID[$t]}" || die "$t is no longer running"
      raw="$OUT/round$r-$c-$t.txt"
      before=$(ticks "${PID[$t]}")
      run_wrk "$t" "$c" "$DURATION" "$raw" || log "wrk failed for $t $c in round $r (see $raw)"
      after=$(ticks "${PID[$t]}")
      requests=$(awk '/requests in/ {print $1}' "$raw")
      fields=$(python3 "$BENCH_TOOL" parse-wrk "$raw") || continue
      IFS=$'\t' read -r rps p50 p99 errs <<<"$fields"
      cpu=$(python3 -c "print(f'{($after - $before) / $hz * 1e6 / max($requests, 1):.2f}')")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$t" "$r" "$rps" "$p50" "$p99" "$errs" "$cpu" >>"$RUNS"
      log "round $r/$ROUNDS $c $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errs, CPU $cpu us/req"
      sleep 1
    done
  done
done

META="$OUT/meta.txt"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc), $(uname -sr)"
  echo "teal_bins=$(teal_bins_desc)"
  echo "command=DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=$WARMUP CHUNKS=$CHUNKS CHUNK_SIZE=$CHUNK_SIZE CASES=\"$CASES\" REFS=\"$REFS\"${TEAL_BINS:+ TEAL_BINS=\"$TEAL_BINS\"}${TEAL_BIN:+ TEAL_BIN=$TEAL_BIN} benchmarks/chunked.sh"
  echo "body=$CHUNKS chunks of $CHUNK_SIZE bytes ($EXPECTED_LEN bytes)"
  echo "wrk_cmd=wrk -t1 -c$CONNS -d${DURATION}s --latency"
  echo "outdir=$OUT_REL"
} >"$META"
python3 "$BENCH_TOOL" chunked-section --meta "$META" --runs "$RUNS" --checks "$CHECKS" >"$OUT/section.md"
python3 "$BENCH_TOOL" put-section "$RESULTS_MD" --body "$OUT/section.md"
log "wrote the \"Chunked bodies\" section of benchmarks/RESULTS.md"
grep '^|' "$OUT/section.md"
