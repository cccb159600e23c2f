#!/usr/bin/env bash
# TLS benchmark: h2load against Teal, nghttpx and nginx terminating TLS (same certificate,
# P-256 ECDSA, TLS 1.3), each with one worker, over the same six nginx backends with the 2/4
# weighted split and keep-alive HTTP/1.1 upstream connections; clients speak HTTP/2 (h2load's
# default, ALPN h2) and then HTTP/1.1 (h2load --h1). A second Teal ("teal-local") has only a route
# for another host, so it answers every request itself (404, no upstream): its HTTP/2 row is the
# cost of TLS, swift-nio-http2 and Teal's request handling without the upstream leg. Writes the
# "TLS and HTTP/2" section of benchmarks/RESULTS.md.
# Env: ROUNDS=2 DURATION=8 CLIENTS=64 STREAMS=10 (concurrent streams per HTTP/2 connection)
#      TEAL_BIN=...
#      PROFILE=1: before the rounds, one unmeasured HTTP/2 run per Teal under perf (call graphs);
#      each one's samples per module (benchtool.py perf-modules) go into the section.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-64}
STREAMS=${STREAMS:-10}
ensure_tools h2load nghttpx nginx openssl curl python3
PROFILE=${PROFILE:-0}
[[ $PROFILE == 1 ]] && ensure_tools perf
teal_binary || die "no Teal binary"
bench_init "$PKG_ROOT/benchmarks/out/tls-$(date +%Y%m%d-%H%M%S)"
reserve_ports 15
start_backends

cert_dir=$BENCH_TMP/certs
mkdir -p "$cert_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cert_dir/key.pem" \
  -out "$cert_dir/cert.pem" -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" -days 2 2>/dev/null

# Teal
take_port teal_port
take_port teal_plain
take_port teal_admin
teal_dir=$BENCH_TMP/teal
write_teal_routes "$teal_dir/routes"
start_bg teal "$TEAL_BIN" serve --routes "$teal_dir/routes" --listen "127.0.0.1:$teal_plain" --admin "127.0.0.1:$teal_admin" \
  --tls-listen "127.0.0.1:$teal_port" --cert "$cert_dir/cert.pem" --key "$cert_dir/key.pem" \
  --state "$teal_dir/state.sqlite" --threads 1
teal_pid=$STARTED_PID
wait_http "http://127.0.0.1:$teal_plain/" "$STARTED_PID" 30 || die "teal did not start"

# Teal answering by itself: the only route is for another host.
take_port teal_local_port
take_port teal_local_admin
take_port teal_local_plain
local_dir=$BENCH_TMP/teal-local
write_teal_routes "$local_dir/routes"
printf 'match:\n  host: elsewhere.test\n' >>"$local_dir/routes/bench.yaml"
start_bg teal-local "$TEAL_BIN" serve --routes "$local_dir/routes" --admin "127.0.0.1:$teal_local_admin" \
  --listen "127.0.0.1:$teal_local_plain" --tls-listen "127.0.0.1:$teal_local_port" --cert "$cert_dir/cert.pem" --key "$cert_dir/key.pem" \
  --state "$local_dir/state.sqlite" --threads 1
teal_local_pid=$STARTED_PID

# nghttpx
take_port nghttpx_port
backends=()
for a in "${BLUE_ADDRS[@]}"; do backends+=("--backend=${a/:/,};;weight=$BLUE_WEIGHT"); done
for a in "${GREEN_ADDRS[@]}"; do backends+=("--backend=${a/:/,};;weight=$GREEN_WEIGHT"); done
start_bg nghttpx nghttpx --conf=/dev/null --workers=1 --frontend="127.0.0.1,$nghttpx_port" "${backends[@]}" \
  --backend-keep-alive-timeout=60s --no-ocsp --errorlog-file="$BENCH_LOGDIR/nghttpx-error.log" \
  --accesslog-file=/dev/null "$cert_dir/key.pem" "$cert_dir/cert.pem"
nghttpx_pid=$STARTED_PID

# nginx
take_port nginx_port
nginx_dir=$BENCH_TMP/nginx-tls
mkdir -p "$nginx_dir"
{
  nginx_proxy_head "$nginx_dir" $((2 * CLIENTS))
  cat <<EOF
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        ssl_certificate $cert_dir/cert.pem;
        ssl_certificate_key $cert_dir/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$BENCH_LOGDIR/nginx-tls.conf"
nginx_start nginx-tls "$BENCH_LOGDIR/nginx-tls.conf" "$nginx_dir" || die "nginx did not start"
nginx_pid=$STARTED_PID

# CPU time (user and system clock ticks) of a proxy: its process and its children (workers).
tree_ticks() {
  local user=0 sys=0 p u s
  for p in "$1" $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo 0 0)
    user=$((user + u))
    sys=$((sys + s))
  done
  echo "$user $sys"
}
hz=$(getconf CLK_TCK)

for port in "$teal_port" "$nghttpx_port" "$nginx_port" "$teal_local_port"; do
  expect=200
  [[ $port == "$teal_local_port" ]] && expect=404
  for ((i = 0; i < 100; i++)); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/") == "$expect" ]] && break
    sleep 0.1
  done
  [[ $(curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' "https://127.0.0.1:$port/") == "$expect 2" ]] ||
    die "port $port does not answer $expect over HTTP/2"
done
log "TLS proxies up: teal $teal_port, nghttpx $nghttpx_port, nginx $nginx_port, teal-local $teal_local_port"

# Profiles come from runs of their own, outside the measured rounds (perf slows what it records).
if [[ $PROFILE == 1 ]]; then
  for proxy in teal teal_local; do
    port_var="${proxy}_port"
    pid_var="${proxy}_pid"
    h2load -D "$DURATION" -c "$CLIENTS" -t 1 -m "$STREAMS" --warm-up-time=1 "https://127.0.0.1:${!port_var}/" \
      >"$BENCH_LOGDIR/h2load-$proxy-profile.txt" 2>&1 &
    h2load_pid=$!
    sleep 1
    perf record -F 2000 --call-graph=fp -p "${!pid_var}" -o "$BENCH_LOGDIR/perf-$proxy.data" \
      -- sleep $((DURATION > 3 ? DURATION - 2 : 1)) >/dev/null 2>&1 || true
    wait "$h2load_pid" || true
    perf script -i "$BENCH_LOGDIR/perf-$proxy.data" -F ip,sym,dso 2>/dev/null >"$BENCH_LOGDIR/perf-$proxy.txt" || true
    python3 "$BENCH_TOOL" perf-modules "$BENCH_LOGDIR/perf-$proxy.txt" >"$BENCH_LOGDIR/modules-$proxy.txt" || true
    log "profile of $proxy: $(head -n 4 "$BENCH_LOGDIR/modules-$proxy.txt" | tr '\n' ' ')"
  done
fi

ROWS=()
for round in $(seq 1 "$ROUNDS"); do
  for protocol in h2 h1; do
    proxies=(teal nghttpx nginx)
    [[ $protocol == h2 ]] && proxies+=(teal_local)
    for proxy in "${proxies[@]}"; do
      port_var="${proxy}_port"
      port=${!port_var}
      pid_var="${proxy}_pid"
      out="$BENCH_LOGDIR/h2load-$proxy-$protocol-$round.txt"
      flags=(-D "$DURATION" -c "$CLIENTS" -t 1 --warm-up-time=1)
      if [[ $protocol == h2 ]]; then flags+=(-m "$STREAMS"); else flags+=(--h1); fi
      # CPU is sampled after h2load's one-second warm-up, like the requests it counts.
      h2load "${flags[@]}" "https://127.0.0.1:$port/" >"$out" 2>&1 &
      h2load_pid=$!
      sleep 1
      read -r user_before sys_before < <(tree_ticks "${!pid_var}")
      wait "$h2load_pid" || true
      read -r user_after sys_after < <(tree_ticks "${!pid_var}")
      echo "cpu_ticks $((user_after - user_before)) $((sys_after - sys_before)) hz $hz" >>"$out"
      log "round $round $protocol $proxy: $(grep -E '^finished in|^requests:' "$out" | tr '\n' ' ')"
      ROWS+=("${proxy/_/-} $protocol $round $out")
    done
  done
done

python3 - "$DURATION" "$CLIENTS" "$STREAMS" "$TEAL_BIN" "$(git_desc)" "$BENCH_LOGDIR" "${ROWS[@]}" >"$BENCH_LOGDIR/section.md" <<'PY'
import os, re, statistics, sys, datetime
duration, clients, streams, binary, desc, logdir = sys.argv[1:7]
rows = sys.argv[7:]
data = {}
user_cpu = {}
lines = ["## TLS and HTTP/2 (h2load)", "",
         f"Generated by `benchmarks/tls.sh` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC ({desc}) with `{binary}`: "
         f"h2load -D {duration} -c {clients} -t 1 (HTTP/2: -m {streams} streams per connection; HTTP/1.1: --h1) against each "
         "proxy terminating TLS with the same P-256 certificate, one worker each, over the same six nginx backends "
         "(2/4 weighted, keep-alive HTTP/1.1 upstream). Everything shares the machine's two cores. "
         "teal-local is a second Teal whose only route is for another host: it answers every request "
         "itself (404, no upstream), so its row is what TLS, swift-nio-http2 and Teal's request handling "
         "cost without the upstream leg. CPU per request: user and system time of the proxy's processes "
         "after h2load's one-second warm-up, over the requests h2load completed.", "",
         "| protocol | proxy | round | req/s | failed | mean latency | max latency | CPU per request (user + system) |",
         "|---|---|---:|---:|---:|---:|---:|---:|"]
for row in rows:
    proxy, protocol, round_, path = row.split(" ", 3)
    text = open(path).read()
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    rps = float(m.group(1)) if m else 0.0
    f = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    failed = int(f.group(2)) + int(f.group(3)) if f else -1
    t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    mean, most = (t.group(3), t.group(2)) if t else ("?", "?")
    d = re.search(r"requests: \d+ total, \d+ started, (\d+) done", text)
    c = re.search(r"cpu_ticks (\d+) (\d+) hz (\d+)", text)
    if c and d and int(d.group(1)):
        per = lambda ticks: int(ticks) / int(c.group(3)) * 1e6 / int(d.group(1))
        cpu = f"{per(c.group(1)):.1f} + {per(c.group(2)):.1f} µs"
    else:
        cpu = "?"
    data.setdefault((protocol, proxy), []).append(rps)
    if c and d and int(d.group(1)):
        user_cpu.setdefault((protocol, proxy), []).append(per(c.group(1)))
    shown = f"{failed} (404s, by design)" if proxy == "teal-local" else str(failed)
    lines.append(f"| {protocol} | {proxy} | {round_} | {rps:,.0f} | {shown} | {mean} | {most} | {cpu} |")
lines.append("")
for protocol in ("h2", "h1"):
    med = {p: statistics.median(data.get((protocol, p), [0])) for p in ("teal", "nghttpx", "nginx")}
    if med["nghttpx"]:
        lines.append(f"{protocol}: median req/s teal {med['teal']:,.0f}, nghttpx {med['nghttpx']:,.0f}, nginx {med['nginx']:,.0f} "
                     f"(teal/nghttpx {med['teal'] / med['nghttpx']:.2f}).")
floor = user_cpu.get(("h2", "teal-local"))
proxied = user_cpu.get(("h2", "nghttpx"))
if floor and proxied:
    lines.append(f"h2 user time per request: teal-local (answering itself) {statistics.median(floor):.1f} µs, "
                 f"nghttpx (proxying) {statistics.median(proxied):.1f} µs.")
for proxy in ("teal", "teal-local"):
    path = os.path.join(logdir, f"modules-{proxy.replace('-', '_')}.txt")
    if os.path.exists(path):
        lines += ["", f"Samples per module, {proxy}, HTTP/2, a run of its own (`perf record --call-graph=fp`; the Swift runtime "
                  "and libc are charged to the module that called them):", "", "```",
                  open(path).read().rstrip("\n"), "```"]
print("\n".join(lines))
PY
python3 "$BENCH_TOOL" put-section "$RESULTS_MD" --body "$BENCH_LOGDIR/section.md"
cat "$BENCH_LOGDIR/section.md"
