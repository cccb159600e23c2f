#!/usr/bin/env bash
# CPU time each proxy process spends per proxied request (user + system, from /proc/PID/stat),
# with the same backends, split and wrk load as run.sh. Throughput on a 2-core machine where
# wrk, the backends and the proxy share the cores is decided by this number, so it is the figure
# to watch when optimising; it is also steadier than req/s on a noisy machine.
# Usage: benchmarks/cpu.sh  (env: DURATION=5 ROUNDS=3 CONNS=64 TEAL_BIN=...; or
#        TEAL_BINS="before=PATH after=PATH" to measure several Teal binaries in the same rounds)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
export WORKERS=1 NGINX_SINGLE_PROCESS=1

bench_init "$PKG_ROOT/benchmarks/out/cpu-$(date +%Y%m%d-%H%M%S)"
ensure_tools wrk nginx haproxy curl python3
teal_targets || die "no Teal binary"
reserve_ports $((8 + 2 * ${#TEAL_TARGETS[@]}))
start_backends
declare -A PORT PID
take_port 'PORT[nginx]'; take_port 'PORT[haproxy]'
start_nginx_proxy "${PORT[nginx]}" || die "nginx did not start"; PID[nginx]=$NGINX_PID
start_haproxy "${PORT[haproxy]}" || die "haproxy did not start"; PID[haproxy]=$HAPROXY_PID
for t in "${TEAL_TARGETS[@]}"; do
  take_port "PORT[$t]"; take_port admin_port
  TEAL_BIN=${TEAL_TARGET_BIN[$t]} start_teal "${PORT[$t]}" "$admin_port" || die "$t did not start"; PID[$t]=$TEAL_PID
done
[[ -z ${TEAL_BINS:-} ]] || log "Teal binaries: $(teal_bins_desc)"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
printf '%-12s %6s %10s %14s\n' proxy round "req/s" "CPU us/req"
for round in $(seq 1 "$ROUNDS"); do
  for target in nginx haproxy "${TEAL_TARGETS[@]}"; do
    url="http://127.0.0.1:${PORT[$target]}/"
    wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
    before=$(ticks "${PID[$target]}")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
    after=$(ticks "${PID[$target]}")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    printf '%-12s %6s %10s %14s\n' "$target" "$round" "$rps" \
      "$(python3 -c "print(f'{($after - $before) / $hz * 1e6 / $requests:.2f}')")"
  done
done
