# shellcheck shell=bash
# Shared functions for benchmarks/run.sh and benchmarks/allocs.sh. Source it; do not run it.
#
# Everything listens on and talks to 127.0.0.1 only. Every process started through
# start_bg is stopped by the EXIT trap that bench_init installs.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PKG_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_TOOL="$BENCH_DIR/benchtool.py"
RESULTS_MD="$BENCH_DIR/RESULTS.md"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

BENCH_PIDS=()   # processes started by start_bg, stopped on exit
BENCH_TMP=""    # scratch directory (pid files, nginx temp dirs, state), removed on exit
BENCH_LOGDIR="" # where configs and logs of started processes go (kept)
PORT_POOL=()    # free ports reserved up front by reserve_ports
PORT_NEXT=0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- set-up and clean-up

# bench_init LOGDIR: scratch dir, log dir and the clean-up trap.
bench_init() {
  BENCH_LOGDIR=$1
  mkdir -p "$BENCH_LOGDIR"
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/teal-bench.XXXXXX")
  chmod 755 "$BENCH_TMP" # nginx workers may run as another user when started by root
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
}

bench_cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM HUP
  for pid in "${BENCH_PIDS[@]}"; do
    stop_pid "$pid" || true
  done
  BENCH_PIDS=()
  if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
    rm -rf "$BENCH_TMP"
  fi
  exit "$rc"
}

# is_our_child PID: true while PID is alive and still a child of this script
# (guards against signalling a recycled PID).
is_our_child() {
  local stat ppid
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # fields after "pid (comm) "
  read -r _ ppid _ <<<"$stat"
  [[ $ppid == "$$" ]]
}

forget_pid() {
  local pid keep=()
  for pid in "${BENCH_PIDS[@]}"; do
    [[ $pid == "$1" ]] || keep+=("$pid")
  done
  BENCH_PIDS=("${keep[@]}")
}

# proc_start PID: the process start time (field 22 of /proc/PID/stat), empty if gone.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  awk '{print $20}' <<<"$stat"
}

# is_running PID: alive and not a zombie.
is_running() {
  [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# stop_pid PID [GRACE_SECONDS]: SIGTERM, wait (bounded), then SIGKILL it and its children.
# Returns the exit status of PID (0 if it was not ours or already gone).
stop_pid() {
  local pid=$1 grace=${2:-5} kids=() k i rc=0
  forget_pid "$pid"
  if ! is_our_child "$pid"; then
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
  fi
  # Remember children (nginx workers) by pid and start time, in case they outlive the parent.
  for k in $(pgrep -P "$pid" 2>/dev/null || true); do
    kids+=("$k:$(proc_start "$k")")
  done
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    is_running "$pid" || break
    sleep 0.1
  done
  if is_running "$pid"; then
    log "pid $pid did not stop within ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  for k in "${kids[@]}"; do
    if [[ -n ${k#*:} && $(proc_start "${k%%:*}") == "${k#*:}" ]]; then
      kill -KILL "${k%%:*}" 2>/dev/null || true
    fi
  done
  return "$rc"
}

# start_bg NAME CMD...: run CMD in the background, output to BENCH_LOGDIR/NAME.log.
# Sets STARTED_PID.
start_bg() {
  local name=$1
  shift
  "$@" >"$BENCH_LOGDIR/$name.log" 2>&1 </dev/null &
  STARTED_PID=$!
  BENCH_PIDS+=("$STARTED_PID")
}

# ---------------------------------------------------------------- packages

# ensure_tools CMD...: install the Debian packages for missing commands (apt-get update
# first), only when something is missing.
ensure_tools() {
  local cmd pkg missing=() pkgs=()
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case $cmd in
      nginx) pkg=nginx-light ;;
      h2load) pkg=nghttp2-client ;;
      nghttpx) pkg=nghttp2-proxy ;;
      perf) pkg=linux-perf ;;
      *) pkg=$cmd ;; # wrk, haproxy, curl, gcc, python3, openssl
    esac
    missing+=("$cmd")
    pkgs+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "missing: ${missing[*]}; installing ${pkgs[*]} with apt-get"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${pkgs[*]} yourself"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${pkgs[*]} yourself"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
  for cmd in "${missing[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing"
  done
}

# ---------------------------------------------------------------- ports and HTTP checks

# reserve_ports N: fill PORT_POOL with N distinct free ports on 127.0.0.1.
reserve_ports() {
  read -r -a PORT_POOL <<<"$(python3 "$BENCH_TOOL" free-ports "$1")"
  PORT_NEXT=0
  ((${#PORT_POOL[@]} == $1)) || die "could not reserve $1 free ports"
}

# take_port VAR: assign the next reserved port to VAR.
take_port() {
  ((PORT_NEXT < ${#PORT_POOL[@]})) || die "port pool exhausted"
  printf -v "$1" '%s' "${PORT_POOL[PORT_NEXT]}"
  PORT_NEXT=$((PORT_NEXT + 1))
}

# http_status URL: print the status code (000 when nothing answers).
http_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# wait_http URL PID [SECONDS]: wait until URL answers 200 while PID stays alive.
wait_http() {
  local url=$1 pid=$2 secs=${3:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    [[ $(http_status "$url") == 200 ]] && return 0
    if ! is_running "$pid"; then
      log "process $pid exited before $url answered"
      return 1
    fi
    sleep 0.1
  done
  log "$url did not answer 200 within ${secs}s"
  return 1
}

# ---------------------------------------------------------------- backends

# Backend layout shared by every proxy: b1-b3 blue, b4-b6 green.
BACKEND_NAMES=(b1 b2 b3 b4 b5 b6)
BACKEND_PORTS=()
BLUE_ADDRS=()
GREEN_ADDRS=()
BLUE_WEIGHT=2  # per-instance weights that give blue:green = 2:4 with 3+3 instances
GREEN_WEIGHT=4

# nginx_main_directives DIR / nginx_http_directives DIR: main-level and http-level settings for a private nginx
# prefix DIR (pid, error log, temp paths) so it needs nothing from /etc or /var.
nginx_main_directives() {
  local dir=$1
  # NGINX_SINGLE_PROCESS=1: no master, the one process serves (used for allocation counts).
  [[ ${NGINX_SINGLE_PROCESS:-0} == 1 ]] && echo "master_process off;"
  cat <<EOF
daemon off;
worker_processes ${WORKERS:-1};
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
EOF
}

nginx_http_directives() {
  local dir=$1 v m
  v=$(nginx -V 2>&1)
  mkdir -p "$dir/tmp"
  echo "    access_log off;"
  echo "    keepalive_timeout 75s;"
  echo "    keepalive_requests 1000000;"
  echo "    client_body_temp_path $dir/tmp/body;"
  # Temp paths of modules compiled in, so that nothing is created under /var/lib/nginx.
  for m in proxy fastcgi uwsgi scgi; do
    [[ $v == *"--without-http_${m}_module"* ]] || echo "    ${m}_temp_path $dir/tmp/$m;"
  done
}

# nginx_start NAME CONF DIR [ENV=VALUE...]: start nginx in the foreground with a private
# prefix DIR, optionally with extra environment.
nginx_start() {
  local name=$1 conf=$2 dir=$3 eopt=()
  shift 3
  # -e (error log before the config is read) exists since nginx 1.19.5.
  if nginx -h 2>&1 | grep -q -- '-e filename'; then
    eopt=(-e "$dir/error.log")
  fi
  nginx -t -q -p "$dir" "${eopt[@]}" -c "$conf" >"$BENCH_LOGDIR/$name.configtest.log" 2>&1 ||
    { cat "$BENCH_LOGDIR/$name.configtest.log" >&2; return 1; }
  start_bg "$name" env "$@" nginx -p "$dir" "${eopt[@]}" -c "$conf"
}

# start_backends: one nginx with 1 worker serving the six backend ports.
# Needs 6 reserved ports. Sets BACKEND_PORTS, BLUE_ADDRS, GREEN_ADDRS, BACKENDS_PID.
start_backends() {
  local dir=$BENCH_TMP/backends conf=$BENCH_LOGDIR/backends.nginx.conf i port name
  mkdir -p "$dir"
  BACKEND_PORTS=()
  for i in 0 1 2 3 4 5; do
    take_port port
    BACKEND_PORTS+=("$port")
  done
  BLUE_ADDRS=("127.0.0.1:${BACKEND_PORTS[0]}" "127.0.0.1:${BACKEND_PORTS[1]}" "127.0.0.1:${BACKEND_PORTS[2]}")
  GREEN_ADDRS=("127.0.0.1:${BACKEND_PORTS[3]}" "127.0.0.1:${BACKEND_PORTS[4]}" "127.0.0.1:${BACKEND_PORTS[5]}")
  {
    WORKERS=1 nginx_main_directives "$dir"
    echo "http {"
    nginx_http_directives "$dir"
    echo "    default_type text/plain;"
    for i in 0 1 2 3 4 5; do
      name=${BACKEND_NAMES[i]}
      port=${BACKEND_PORTS[i]}
      cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location = /healthz {
            return 200 "ok\\n";
        }
        location / {
            add_header X-Backend $name always;
            return 200 "$name\\n";
        }
    }
EOF
    done
    echo "}"
  } >"$conf"
  nginx_start backends "$conf" "$dir" || die "backend nginx failed to start (see $BENCH_LOGDIR)"
  BACKENDS_PID=$STARTED_PID
  for i in 0 1 2 3 4 5; do
    wait_http "http://127.0.0.1:${BACKEND_PORTS[i]}/healthz" "$BACKENDS_PID" 10 ||
      die "backend ${BACKEND_NAMES[i]} on port ${BACKEND_PORTS[i]} does not answer"
  done
  log "backends up: b1-b3 (blue) ${BLUE_ADDRS[*]}; b4-b6 (green) ${GREEN_ADDRS[*]}"
}

# ---------------------------------------------------------------- proxies

# start_nginx_proxy PORT [ENV=VALUE...]: nginx as reverse proxy, WORKERS workers, weighted
# upstream, keep-alive on both hops. Sets NGINX_PID.
# nginx_proxy_head DIR KEEPALIVE: nginx's main directives, then `http {` with the weighted
# upstream `bench` (2/4 over the six backends, KEEPALIVE idle connections); the caller adds the
# server block and the closing brace.
nginx_proxy_head() {
  local dir=$1 keepalive=$2 a
  nginx_main_directives "$dir"
  echo "http {"
  nginx_http_directives "$dir"
  echo "    upstream bench {"
  for a in "${BLUE_ADDRS[@]}"; do echo "        server $a weight=$BLUE_WEIGHT;"; done
  for a in "${GREEN_ADDRS[@]}"; do echo "        server $a weight=$GREEN_WEIGHT;"; done
  echo "        keepalive $keepalive;"
  echo "        keepalive_requests 1000000;"
  echo "        keepalive_timeout 60s;"
  echo "    }"
}

start_nginx_proxy() {
  local port=$1 dir=$BENCH_TMP/nginx-proxy-$1 conf=$BENCH_LOGDIR/nginx-proxy.conf a
  shift
  # Idle upstream connections kept per worker. With 64 client connections, "keepalive 64"
  # still closes (and reopens) some upstream connections under load; 2 x CONNS does not.
  NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-$((2 * ${CONNS:-64}))}
  mkdir -p "$dir"
  {
    nginx_proxy_head "$dir" "$NGINX_KEEPALIVE"
    cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  } >"$conf"
  nginx_start nginx-proxy "$conf" "$dir" "$@" || return 1
  NGINX_PID=$STARTED_PID
  wait_http "http://127.0.0.1:$port/" "$NGINX_PID" 10
}

# start_haproxy PORT: HAProxy, 1 thread, weighted round robin, keep-alive + reuse.
# Sets HAPROXY_PID.
start_haproxy() {
  local port=$1 conf=$BENCH_LOGDIR/haproxy.cfg i
  {
    cat <<EOF
global
    nbthread ${WORKERS:-1}
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend bench_in
    bind 127.0.0.1:$port
    default_backend bench

backend bench
    balance roundrobin
EOF
    for i in 0 1 2; do echo "    server ${BACKEND_NAMES[i]} ${BLUE_ADDRS[i]} weight $BLUE_WEIGHT"; done
    for i in 0 1 2; do echo "    server ${BACKEND_NAMES[i + 3]} ${GREEN_ADDRS[i]} weight $GREEN_WEIGHT"; done
  } >"$conf"
  haproxy -c -q -f "$conf" >"$BENCH_LOGDIR/haproxy.configtest.log" 2>&1 ||
    { cat "$BENCH_LOGDIR/haproxy.configtest.log" >&2; return 1; }
  start_bg haproxy haproxy -db -f "$conf"
  HAPROXY_PID=$STARTED_PID
  wait_http "http://127.0.0.1:$port/" "$HAPROXY_PID" 10
}

# teal_binary: set TEAL_BIN, building `teal` in release unless TEAL_BIN is already given.
teal_binary() {
  if [[ -n ${TEAL_BIN:-} ]]; then
    if [[ ! -x $TEAL_BIN ]]; then
      log "TEAL_BIN=$TEAL_BIN is not an executable file"
      return 1
    fi
    return 0
  fi
  command -v swift >/dev/null 2>&1 || { log "swift not found; set TEAL_BIN"; return 1; }
  # The production build of README.md: run-time exclusivity checks off in every module, NIO's too.
  local flags=(-c release --scratch-path .build-production -Xswiftc -enforce-exclusivity=unchecked)
  log "building teal (swift build ${flags[*]} --product teal) in $PKG_ROOT"
  (cd "$PKG_ROOT" && swift build "${flags[@]}" --product teal) >&2 || { log "swift build failed"; return 1; }
  TEAL_BIN="$(cd "$PKG_ROOT" && swift build "${flags[@]}" --show-bin-path)/teal"
  [[ -x $TEAL_BIN ]] || { log "no binary at $TEAL_BIN after build"; return 1; }
}

# teal_targets: the Teal targets of a run. With TEAL_BINS="NAME=PATH NAME=PATH ..." (for example
# "before=/src/a/.build/release/teal after=/src/b/.build/release/teal") each entry is a target of
# its own, named teal-NAME, measured in the same rounds as the others; otherwise the one target
# `teal` runs TEAL_BIN (built by teal_binary when unset). Fills TEAL_TARGETS (names, in order) and
# TEAL_TARGET_BIN (name -> binary). A malformed TEAL_BINS stops the script.
TEAL_TARGETS=()
declare -A TEAL_TARGET_BIN=()
teal_targets() {
  local entry name path
  TEAL_TARGETS=()
  TEAL_TARGET_BIN=()
  if [[ -z ${TEAL_BINS:-} ]]; then
    teal_binary || return 1
    TEAL_TARGETS=(teal)
    TEAL_TARGET_BIN[teal]=$TEAL_BIN
    return 0
  fi
  for entry in $TEAL_BINS; do
    name=${entry%%=*}
    path=${entry#*=}
    [[ $entry == *=* && $name =~ ^[A-Za-z0-9_.]+$ ]] || die "TEAL_BINS entry '$entry' is not NAME=PATH"
    [[ -x $path ]] || die "TEAL_BINS: $path is not an executable file"
    [[ -z ${TEAL_TARGET_BIN[teal-$name]:-} ]] || die "TEAL_BINS names $name twice"
    TEAL_TARGETS+=("teal-$name")
    TEAL_TARGET_BIN[teal-$name]=$path
  done
}

# teal_bins_desc: one line naming each Teal target's binary and the commit of the tree it lies in.
teal_bins_desc() {
  local t path rev parts=()
  for t in "${TEAL_TARGETS[@]}"; do
    path=${TEAL_TARGET_BIN[$t]}
    if rev=$(git -C "$(dirname "$path")" rev-parse --short HEAD 2>/dev/null); then
      parts+=("$t: \`$path\` (commit $rev)")
    else
      parts+=("$t: \`$path\`")
    fi
  done
  local IFS=';'
  echo "${parts[*]}" | sed 's/;/; /g'
}

# write_teal_routes DIR: the route file for the benchmark (default route, split 2/4).
# Health probes are switched off to keep probe traffic out of the measurement;
# TEAL_ROUTE_HEALTH replaces that line (set it empty to leave the key out).
write_teal_routes() {
  local dir=$1 health='health: {enabled: false}'
  health=${TEAL_ROUTE_HEALTH-$health}
  mkdir -p "$dir"
  cat >"$dir/bench.yaml" <<EOF
route: bench
blue:
  version: "1"
  instances: ["${BLUE_ADDRS[0]}", "${BLUE_ADDRS[1]}", "${BLUE_ADDRS[2]}"]
green:
  version: "2"
  instances: ["${GREEN_ADDRS[0]}", "${GREEN_ADDRS[1]}", "${GREEN_ADDRS[2]}"]
split: 2/4
$health
EOF
}

# start_teal PORT ADMIN_PORT [ENV=VALUE...]: run `teal serve` with the bench route and one
# thread, optionally under extra environment (e.g. LD_PRELOAD). Sets TEAL_PID.
start_teal() {
  local port=$1 admin=$2 dir
  shift 2
  dir=$(mktemp -d "$BENCH_TMP/teal.XXXXXX")
  write_teal_routes "$dir/routes"
  cp "$dir/routes/bench.yaml" "$BENCH_LOGDIR/teal-route.yaml"
  start_bg "teal-$port" env "$@" "$TEAL_BIN" serve --routes "$dir/routes" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" \
    --state "$dir/state.sqlite" --threads "${WORKERS:-1}"
  TEAL_PID=$STARTED_PID
  if ! wait_http "http://127.0.0.1:$port/" "$TEAL_PID" 30; then
    log "teal failed to start; last lines of $BENCH_LOGDIR/teal-$port.log:"
    tail -n 20 "$BENCH_LOGDIR/teal-$port.log" >&2 || true
    return 1
  fi
}

# git_desc: short description of the source tree state.
git_desc() {
  local rev dirty=""
  rev=$(git -C "$PKG_ROOT" rev-parse --short HEAD 2>/dev/null) || { echo "no commit yet"; return; }
  [[ -z $(git -C "$PKG_ROOT" status --porcelain -- Sources Package.swift 2>/dev/null) ]] || dirty=" + uncommitted changes"
  echo "commit $rev$dirty"
}
