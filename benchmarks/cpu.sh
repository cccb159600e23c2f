#!/usr/bin/env bash
# CPU time each proxy process spends per proxied request (user + system, from /proc/PID/stat),
# with the same backends, split and wrk load as run.sh. Throughput on a 2-core machine where
# wrk, the backends and the proxy share the cores is decided by this number, so it is the figure
# to watch when optimising; it is also steadier than req/s on a noisy machine.
# Usage: benchmarks/cpu.sh  (env: DURATION=5 ROUNDS=3 CONNS=64 TEAL_BIN=...)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
export WORKERS=1 NGINX_SINGLE_PROCESS=1

bench_init "$PKG_ROOT/benchmarks/out/cpu-$(date +%Y%m%d-%H%M%S)"
ensure_tools wrk nginx haproxy curl python3
teal_binary || die "no Teal binary"
reserve_ports 10
start_backends
declare -A PORT PID
take_port 'PORT[nginx]'; take_port 'PORT[haproxy]'; take_port 'PORT[teal]'; take_port TEAL_ADMIN_PORT
start_nginx_proxy "${PORT[nginx]}" || die "nginx did not start"; PID[nginx]=$NGINX_PID
start_haproxy "${PORT[haproxy]}" || die "haproxy did not start"; PID[haproxy]=$HAPROXY_PID
start_teal "${PORT[teal]}" "$TEAL_ADMIN_PORT" || die "teal did not start"; PID[teal]=$TEAL_PID

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
printf '%-8s %6s %10s %14s\n' proxy round "req/s" "CPU us/req"
for round in $(seq 1 "$ROUNDS"); do
  for target in nginx haproxy teal; do
    url="http://127.0.0.1:${PORT[$target]}/"
    wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
    before=$(ticks "${PID[$target]}")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
    after=$(ticks "${PID[$target]}")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    printf '%-8s %6s %10s %14s\n' "$target" "$round" "$rps" \
      "$(python3 -c "print(f'{($after - $before) / $hz * 1e6 / $requests:.2f}')")"
  done
done
