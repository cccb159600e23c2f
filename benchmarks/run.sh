#!/usr/bin/env bash
# Throughput/latency comparison on one machine: direct backend vs nginx vs HAProxy vs Teal,
# each proxy with one worker, the same six static backends and the same 2:4 blue:green split.
# Writes benchmarks/RESULTS.md (the block between the bench markers) and keeps raw output in
# benchmarks/out/. See benchmarks/README.md for the environment variables.
set -euo pipefail

# shellcheck source=benchmarks/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DURATION=${DURATION:-10}   # seconds per wrk run
ROUNDS=${ROUNDS:-3}        # rounds over all targets
CONNS=${CONNS:-64}         # wrk connections
WARMUP=${WARMUP:-2}        # seconds of unmeasured wrk per target before round 1 (0 = none)
WORKERS=${WORKERS:-1}      # workers/threads for each proxy (nginx, HAProxy, Teal)
SPREAD_N=${SPREAD_N:-120}  # requests per proxy for the traffic-spread sanity check
for v in DURATION ROUNDS CONNS WARMUP WORKERS SPREAD_N; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0 && WORKERS > 0)) || die "DURATION, ROUNDS, CONNS, WORKERS must be > 0"
export WORKERS
TEAL_BIN_GIVEN=${TEAL_BIN:-}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_REL="benchmarks/out/run-$STAMP"
OUT="$PKG_ROOT/$OUT_REL"
bench_init "$OUT"
log "output directory: $OUT_REL"

ensure_tools wrk nginx haproxy curl gcc python3

declare -A PORT STATUS PID ADMIN_PORT

# Build (or locate) Teal before anything runs, so the build does not disturb the others.
# TEAL_BINS="before=PATH after=PATH" measures several Teal binaries as targets of their own.
TEAL_OK=1
teal_targets || { TEAL_OK=0; TEAL_TARGETS=(teal); }
TARGETS=(direct nginx haproxy "${TEAL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do STATUS[$t]="not started"; done
((TEAL_OK)) || STATUS[teal]="failed (no binary)"

reserve_ports $((8 + 2 * ${#TEAL_TARGETS[@]}))
start_backends
PORT[direct]=${BACKEND_PORTS[0]}
STATUS[direct]=ok
PID[direct]=$BACKENDS_PID
take_port 'PORT[nginx]'
take_port 'PORT[haproxy]'
for t in "${TEAL_TARGETS[@]}"; do
  take_port "PORT[$t]"
  take_port "ADMIN_PORT[$t]"
done

if start_nginx_proxy "${PORT[nginx]}"; then
  STATUS[nginx]=ok
  PID[nginx]=$NGINX_PID
else
  STATUS[nginx]="failed (did not start)"
  log "nginx proxy failed to start; see $OUT_REL/nginx-proxy.log"
fi

if start_haproxy "${PORT[haproxy]}"; then
  STATUS[haproxy]=ok
  PID[haproxy]=$HAPROXY_PID
else
  STATUS[haproxy]="failed (did not start)"
  log "HAProxy failed to start; see $OUT_REL/haproxy.log"
fi

for t in "${TEAL_TARGETS[@]}"; do
  if ((TEAL_OK)); then
    if TEAL_BIN=${TEAL_TARGET_BIN[$t]} start_teal "${PORT[$t]}" "${ADMIN_PORT[$t]}"; then
      STATUS[$t]=ok
      PID[$t]=$TEAL_PID
    else
      STATUS[$t]="failed (did not start)"
    fi
  fi
  if [[ ${STATUS[$t]} != ok ]]; then
    log "TEAL FAILED ($t): ${STATUS[$t]}; continuing with the other targets"
  fi
done

# One verification request per target, then the traffic-spread check through each proxy.
META="$OUT/meta.txt"
: >"$META"
for t in "${TARGETS[@]}"; do
  [[ ${STATUS[$t]} == ok ]] || continue
  code=$(http_status "http://127.0.0.1:${PORT[$t]}/")
  if [[ $code != 200 ]]; then
    STATUS[$t]="failed (verification answered $code)"
    log "$t: verification request answered $code, skipping it"
    continue
  fi
  if [[ $t != direct ]]; then
    if spread=$(python3 "$BENCH_TOOL" spread "${PORT[$t]}" "$SPREAD_N"); then
      log "$t: 200 OK; spread over $SPREAD_N requests: $spread"
      echo "spread_$t=$spread" >>"$META"
    else
      log "$t: spread check failed"
      echo "spread_$t=check failed" >>"$META"
    fi
  else
    log "$t: 200 OK"
  fi
done

WRK_THREADS=1
run_wrk() { # run_wrk TARGET SECONDS OUTFILE
  local url="http://127.0.0.1:${PORT[$1]}/"
  timeout $(($2 + 60)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"$2"s --latency "$url" >"$3" 2>&1
}

if ((WARMUP > 0)); then
  for t in "${TARGETS[@]}"; do
    [[ ${STATUS[$t]} == ok ]] || continue
    log "warm-up: $t (${WARMUP}s)"
    run_wrk "$t" "$WARMUP" "$OUT/warmup-$t.txt" || log "warm-up of $t failed (see $OUT_REL/warmup-$t.txt)"
  done
fi

RUNS="$OUT/runs.tsv"
: >"$RUNS"
n=${#TARGETS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  # Rotate the order each round so no target always runs first or last.
  for ((k = 0; k < n; k++)); do
    t=${TARGETS[(k + r - 1) % n]}
    [[ ${STATUS[$t]} == ok ]] || continue
    if ! is_running "${PID[$t]}"; then
      STATUS[$t]="failed (exited before round $r)"
      log "$t is no longer running; skipping it from now on"
      continue
    fi
    raw="$OUT/round$r-$t.txt"
    log "round $r/$ROUNDS: $t (${DURATION}s)"
    if ! run_wrk "$t" "$DURATION" "$raw"; then
      log "wrk failed for $t in round $r (see $OUT_REL/round$r-$t.txt)"
    fi
    if fields=$(python3 "$BENCH_TOOL" parse-wrk "$raw"); then
      IFS=$'\t' read -r rps p50 p99 errs <<<"$fields"
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$rps" "$p50" "$p99" "$errs" >>"$RUNS"
      log "  $t: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, errors $errs"
    fi
    if ! is_running "${PID[$t]}"; then
      STATUS[$t]="failed (exited during round $r)"
      log "$t exited during round $r"
    fi
    sleep 1
  done
done

# Machine and parameters.
first_line() { "$@" 2>&1 | head -n 1 || true; }
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
  echo "kernel=$(uname -srm)"
  if command -v swift >/dev/null 2>&1; then echo "swift=$(first_line swift --version)"; else echo "swift=not installed"; fi
  echo "nginx=$(first_line nginx -v | sed 's/^nginx version: //')"
  echo "haproxy=$(first_line haproxy -v | sed 's/ - https.*//')"
  echo "wrk=$(first_line wrk --version | sed 's/ Copyright.*//')"
  echo "teal_bin=${TEAL_BIN:-none}"
  echo "git=$(git_desc)"
  if [[ -n ${TEAL_BINS:-} ]]; then
    echo "teal_bins=$(teal_bins_desc)"
    echo "command=DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=$WARMUP WORKERS=$WORKERS TEAL_BINS=\"$TEAL_BINS\" benchmarks/run.sh"
  else
    echo "command=DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=$WARMUP WORKERS=$WORKERS${TEAL_BIN_GIVEN:+ TEAL_BIN=$TEAL_BIN_GIVEN} benchmarks/run.sh"
  fi
  echo "wrk_cmd=wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --latency http://127.0.0.1:PORT/"
  echo "rounds=$ROUNDS"
  echo "warmup=$WARMUP"
  echo "workers=$WORKERS"
  echo "nginx_keepalive=${NGINX_KEEPALIVE:-?}"
  echo "spread_n=$SPREAD_N"
  echo "outdir=$OUT_REL"
} >>"$META"

STATUS_TSV="$OUT/status.tsv"
: >"$STATUS_TSV"
for t in "${TARGETS[@]}"; do printf '%s\t%s\n' "$t" "${STATUS[$t]}" >>"$STATUS_TSV"; done

python3 "$BENCH_TOOL" report "$RESULTS_MD" --meta "$META" --runs "$RUNS" --status "$STATUS_TSV"
log "wrote benchmarks/RESULTS.md"
echo
# The tables of the generated block, separated by blank lines.
sed -n '/<!-- bench:begin -->/,/<!-- bench:end -->/p' "$RESULTS_MD" |
  awk '/^\|/ { print; t = 1; next } t { print ""; t = 0 }'
for t in "${TARGETS[@]}"; do
  [[ ${STATUS[$t]} == ok ]] || echo "$t: ${STATUS[$t]}"
done
