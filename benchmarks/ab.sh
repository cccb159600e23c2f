#!/usr/bin/env bash
# A/B of Teal binaries: each runs as `teal serve --threads 1` (TLS listener and plain listener)
# over the same six nginx backends, and h2load runs against them in turn, round after round, so
# the machine's drift hits both alike. Prints req/s and the Teal process's user and system CPU
# time per completed request (from /proc/PID/stat) for every run. RESULTS.md is not touched.
# Env: BINS="path/a path/b" (required), PROTOCOL=h2 (HTTP/2 over TLS, -m STREAMS) or h1 (plain
#      HTTP/1.1), ROUNDS=3, DURATION=6, CLIENTS=64, STREAMS=10
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

read -r -a bins <<<"${BINS:?set BINS to two or more teal binaries}"
PROTOCOL=${PROTOCOL:-h2}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CLIENTS=${CLIENTS:-64}
STREAMS=${STREAMS:-10}
[[ $PROTOCOL == h2 || $PROTOCOL == h1 ]] || die "PROTOCOL must be h2 or h1"
ensure_tools h2load nginx openssl curl python3
bench_init "$PKG_ROOT/benchmarks/out/ab-$(date +%Y%m%d-%H%M%S)"
reserve_ports $((6 + 3 * ${#bins[@]}))
start_backends

cert_dir=$BENCH_TMP/certs
mkdir -p "$cert_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cert_dir/key.pem" \
  -out "$cert_dir/cert.pem" -subj "/CN=bench.test" -days 2 2>/dev/null

pids=() urls=()
for i in "${!bins[@]}"; do
  take_port tls_port
  take_port plain_port
  take_port admin_port
  dir=$BENCH_TMP/teal$i
  write_teal_routes "$dir/routes"
  start_bg "teal$i" "${bins[$i]}" serve --routes "$dir/routes" --listen "127.0.0.1:$plain_port" --admin "127.0.0.1:$admin_port" \
    --tls-listen "127.0.0.1:$tls_port" --cert "$cert_dir/cert.pem" --key "$cert_dir/key.pem" --state "$dir/state.sqlite" --threads 1
  pids+=("$STARTED_PID")
  wait_http "http://127.0.0.1:$plain_port/" "$STARTED_PID" 30 || die "${bins[$i]} did not start"
  if [[ $PROTOCOL == h2 ]]; then urls+=("https://127.0.0.1:$tls_port/"); else urls+=("http://127.0.0.1:$plain_port/"); fi
done

flags=(-D "$DURATION" -c "$CLIENTS" -t 1)
if [[ $PROTOCOL == h2 ]]; then flags+=(-m "$STREAMS"); else flags+=(--h1); fi
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!bins[@]}"; do
    out="$BENCH_LOGDIR/h2load-$i-$round.txt"
    read -r user_before sys_before < <(awk '{print $14, $15}' "/proc/${pids[$i]}/stat")
    h2load "${flags[@]}" "${urls[$i]}" >"$out" 2>&1 || true
    read -r user_after sys_after < <(awk '{print $14, $15}' "/proc/${pids[$i]}/stat")
    python3 - "$out" "${bins[$i]}" "$round" "$((user_after - user_before))" "$((sys_after - sys_before))" "$hz" <<'PY'
import re, sys
path, binary, round_, user, system, hz = sys.argv[1:]
text = open(path).read()
done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", text).group(1))
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
per = lambda ticks: int(ticks) / int(hz) * 1e6 / max(done, 1)
print(f"round {round_} {binary}: {rps:,.0f} req/s, user {per(user):.2f} + system {per(system):.2f} µs per request")
PY
  done
done
