#!/usr/bin/env bash
# Allocations per proxied request: run Teal (one thread) twice under the malloc_count.c
# LD_PRELOAD shim, once serving ALLOC_N1 and once ALLOC_N2 sequential keep-alive requests,
# and report (A2 - A1) / (N2 - N1). Fixed start-up and shutdown costs cancel out.
# Writes the "## Allocations per proxied request" section of benchmarks/RESULTS.md.
set -euo pipefail

# shellcheck source=benchmarks/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

N1=${ALLOC_N1:-2000}
N2=${ALLOC_N2:-22000}
# teal (default) or nginx: nginx (single process) is there to check the method itself;
# its figure is printed but not written to RESULTS.md.
SUBJECT=${ALLOCS_SUBJECT:-teal}
for v in N1 N2; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "ALLOC_$v must be a positive integer (got '${!v}')"
done
((N1 > 0 && N2 > N1)) || die "need 0 < ALLOC_N1 < ALLOC_N2"
[[ $SUBJECT == teal || $SUBJECT == nginx ]] || die "ALLOCS_SUBJECT must be teal or nginx"
export WORKERS=1
TEAL_BIN_GIVEN=${TEAL_BIN:-}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_REL="benchmarks/out/allocs-$STAMP"
OUT="$PKG_ROOT/$OUT_REL"
bench_init "$OUT"
log "output directory: $OUT_REL"

ensure_tools nginx curl gcc python3

SHIM="$OUT/malloc_count.so"
gcc -O2 -Wall -Wextra -shared -fPIC -o "$SHIM" "$BENCH_DIR/malloc_count.c" -ldl
# Self-check: the shim loads and writes a count for a program that exits normally.
MALLOC_COUNT_OUT="$OUT/selfcheck.count" LD_PRELOAD="$SHIM" "$(type -P true)"
[[ -s $OUT/selfcheck.count ]] || die "the malloc_count shim wrote no count for true(1)"

if [[ $SUBJECT == teal ]]; then
  teal_binary || die "no Teal binary (set TEAL_BIN or make 'swift build -c release --product teal' work)"
fi

reserve_ports 10
start_backends

# measure N: start the subject under the shim, send exactly N requests over one
# keep-alive connection, stop it with SIGTERM, and set COUNT to its allocation total.
measure() {
  local n=$1 port admin countfile=$OUT/count-$1.txt pid rc=0
  take_port port
  take_port admin
  rm -f "$countfile"
  local env=(LD_PRELOAD="$SHIM" MALLOC_COUNT_OUT="$countfile")
  if [[ $SUBJECT == teal ]]; then
    start_teal "$port" "$admin" "${env[@]}" || die "Teal did not start under the shim"
    pid=$TEAL_PID
  else
    NGINX_SINGLE_PROCESS=1 start_nginx_proxy "$port" "${env[@]}" || die "nginx did not start"
    pid=$NGINX_PID
  fi
  log "$SUBJECT: sending $n requests over one keep-alive connection"
  python3 "$BENCH_TOOL" client "$port" "$n" >"$OUT/client-$n.txt" || {
    cat "$OUT/client-$n.txt" >&2
    die "client failed against $SUBJECT"
  }
  log "  $(cat "$OUT/client-$n.txt")"
  stop_pid "$pid" 20 || rc=$?
  ((rc == 0)) || log "warning: $SUBJECT exited with status $rc after SIGTERM (expected 0)"
  [[ -s $countfile ]] || die "$SUBJECT wrote no allocation count: it must exit through exit() on SIGTERM (death by signal skips the shim's destructor)"
  COUNT=$(head -n 1 "$countfile")
  log "  allocation calls: $COUNT ($(tail -n +2 "$countfile" | tr '\n' ' '))"
}

measure "$N1"
A1=$COUNT
measure "$N2"
A2=$COUNT

PER=$(python3 -c "import sys; a1,a2,n1,n2=map(int,sys.argv[1:]); print(f'{(a2-a1)/(n2-n1):.2f}')" "$A1" "$A2" "$N1" "$N2")
echo
echo "$SUBJECT: $PER allocations per proxied request (A1=$A1 for N1=$N1, A2=$A2 for N2=$N2)"

if [[ $SUBJECT != teal ]]; then
  log "ALLOCS_SUBJECT=$SUBJECT: RESULTS.md left unchanged"
  exit 0
fi

BODY="$OUT/section.md"
{
  echo "Measured by \`benchmarks/allocs.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); Teal binary"
  echo "\`$TEAL_BIN\` ($(git_desc))."
  echo
  echo "**$PER allocation calls per proxied request** = (A2 − A1) / (N2 − N1)"
  echo
  echo "| run | requests sent | allocation calls in the Teal process |"
  echo "|---|---:|---:|"
  echo "| 1 | N1 = $N1 | A1 = $A1 |"
  echo "| 2 | N2 = $N2 | A2 = $A2 |"
  echo
  echo "Command: \`ALLOC_N1=$N1 ALLOC_N2=$N2${TEAL_BIN_GIVEN:+ TEAL_BIN=$TEAL_BIN_GIVEN} benchmarks/allocs.sh\`."
  echo "Method: \`benchmarks/malloc_count.c\`, preloaded into \`teal serve --threads 1\`, counts every"
  echo "call to malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign and writes the"
  echo "total when the process exits (Teal is stopped with SIGTERM). Each run proxies exactly N"
  echo "sequential \`GET /\` requests from one keep-alive client connection (plus one readiness"
  echo "request in both runs) through the default route \`bench\` (blue 3, green 3 instances,"
  echo "\`split: 2/4\`, health probes off) to the static nginx backends; start-up, shutdown and"
  echo "the readiness request cancel out in the difference. Raw counts: \`$OUT_REL\`."
} >"$BODY"
python3 "$BENCH_TOOL" allocs-section "$RESULTS_MD" --body "$BODY"
log "wrote the allocation section of benchmarks/RESULTS.md"
