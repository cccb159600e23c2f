#!/usr/bin/env bash
# Replicas benchmark (issue 16): three `teal serve` replicas on one PostgreSQL database.
#
# 1. Split propagation: CHANGES splits set one after another through replica 1's admin API; for
#    each, the time from the API's answer until replicas 2 and 3 both serve it (their admin API
#    polled every millisecond over keep-alive connections). p50, p99 and max.
# 2. Requests/s of one replica with its state in PostgreSQL and of one with a SQLite state file,
#    same backends, wrk alternating between them ROUNDS times (the store is off the request path,
#    so they should be equal).
# 3. Driver take-over, KILLS rounds: a release (plan 2/4 -> 0/6, hold 1h, so it stays at step 1)
#    is started through one replica (a different one each round); once /v1/replicas lists that
#    replica as driving it, the replica is killed with SIGKILL. Measured from the kill until a
#    surviving replica runs the release (its /metrics shows teal_release_driver{route="bench"} 1,
#    polled every 10 ms), and until its /v1/replicas lists it as the driver (replicas report every
#    second, so this is up to 1 s later). A replica is then started in place of the killed one (on
#    new ports) and the release aborted through the new driver; the next round starts once no
#    replica is listed as driving and one more second has passed (the ended release's lease is
#    given up within 0.5 s). p50 and max; every value in takeover.txt of the log directory.
# 4. Rollback across the three replicas, ROLLBACKS runs: a paced load of LOAD_RATE req/s on each
#    replica's proxy (one keep-alive connection each) and a release of a green pool that answers
#    every request with 500 (three `teal demo-backend --error-rate 1`), plan 2/4 -> 0/6,
#    maxErrorRate 5%, minRequests 20, started through a different replica each run. All three
#    replicas' GET /v1/routes/bench are polled in turn (a sweep every ~2 ms); timed from the first
#    sweep that finds green with a share on any replica until the first that finds green weight 0
#    on all three (and also from sending the start request); each run must end rolled back.
#    p50 and max, and the requests that failed in each run (any answer but 200, or none); every
#    run in rollback.txt of the log directory.
#
# Writes the "Replicas" section of benchmarks/RESULTS.md. Everything on 127.0.0.1; every process
# it starts (backends, PostgreSQL, the Teals, the load client) is stopped on exit.
# Env: CHANGES=200 ROUNDS=3 DURATION=10 CONNS=64 KILLS=10 ROLLBACKS=5 LOAD_RATE=200 WORKERS=1
#      TEAL_BIN=... PG_BIN=/usr/lib/postgresql/15/bin RESULTS=file to write instead of RESULTS.md
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

CHANGES=${CHANGES:-200}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
KILLS=${KILLS:-10}
ROLLBACKS=${ROLLBACKS:-5}
LOAD_RATE=${LOAD_RATE:-200}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

bench_init "$PKG_ROOT/benchmarks/out/replicas-$(date +%Y%m%d-%H%M%S)"
ensure_tools wrk nginx curl python3
if [[ ! -x $PG_BIN/initdb ]]; then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi
teal_binary || die "no Teal binary"

# 16 for parts 1 and 2 (6 backends, PostgreSQL, 2 per replica, 2 for the SQLite Teal, 1 spare),
# 2 per replica started in place of a killed one (part 3), 3 failing green instances (part 4).
reserve_ports $((16 + 2 * KILLS + 3))
start_backends

# A throwaway PostgreSQL cluster (as the postgres user when run as root), default durability.
take_port PG_PORT
PG_DIR=$BENCH_TMP/pg
mkdir -p "$PG_DIR"
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  chown postgres:postgres "$PG_DIR"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U teal --auth=trust -E UTF8 --locale=C >"$BENCH_LOGDIR/initdb.log" 2>&1 ||
  die "initdb failed (see $BENCH_LOGDIR/initdb.log)"
start_bg postgres "${as_pg[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR" -c listen_addresses=127.0.0.1
PG_PID=$STARTED_PID
for _ in $(seq 1 100); do
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
  sleep 0.1
done
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U teal -d postgres -c 'CREATE DATABASE teal' || die "cannot create the database"
STATE="postgres://teal@127.0.0.1:$PG_PORT/teal"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"

ROUTES=$BENCH_TMP/routes
write_teal_routes "$ROUTES"
ADMINS=()
PROXIES=()
REPLICA_PIDS=()
# start_replica INDEX LOGNAME: a replica on two new ports in slot INDEX (0-2) of ADMINS, PROXIES
# and REPLICA_PIDS.
start_replica() {
  local index=$1 name=$2 proxy admin
  take_port proxy
  take_port admin
  start_bg "$name" "$TEAL_BIN" serve --routes "$ROUTES" --listen "127.0.0.1:$proxy" --admin "127.0.0.1:$admin" \
    --state "$STATE" --threads "${WORKERS:-1}"
  wait_http "http://127.0.0.1:$proxy/" "$STARTED_PID" 30 || die "replica $name did not start (see $BENCH_LOGDIR)"
  ADMINS[index]=$admin
  PROXIES[index]=$proxy
  REPLICA_PIDS[index]=$STARTED_PID
}
for i in 1 2 3; do
  start_replica $((i - 1)) "teal-replica-$i"
done
log "replicas: proxies ${PROXIES[*]}, admin ${ADMINS[*]}"

# 1. Split propagation.
python3 - "$CHANGES" "${ADMINS[@]}" >"$BENCH_LOGDIR/propagation.txt" <<'PY'
import http.client, json, sys, time
changes, writer, readers = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
write = http.client.HTTPConnection("127.0.0.1", writer, timeout=10)
polls = [http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in readers]
def split_of(conn):
    conn.request("GET", "/v1/routes/bench")
    return json.loads(conn.getresponse().read())["split"]
delays = []
for i in range(changes):
    split = {"blue": 1 + i % 5, "green": 1 + (i * 7) % 4}
    write.request("PUT", "/v1/routes/bench/split", body=json.dumps(split), headers={"Content-Type": "application/json"})
    answer = write.getresponse(); answer.read()
    assert answer.status == 200, answer.status
    start = time.monotonic()
    for conn in polls:
        while split_of(conn) != split:
            if time.monotonic() - start > 10:
                sys.exit(f"change {i}: a replica did not serve {split} within 10 s")
            time.sleep(0.001)
    delays.append((time.monotonic() - start) * 1000)
delays.sort()
pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
print(f"{len(delays)}\t{pick(0.5):.1f}\t{pick(0.99):.1f}\t{delays[-1]:.1f}")
PY
read -r prop_n prop_p50 prop_p99 prop_max <"$BENCH_LOGDIR/propagation.txt"
log "split propagation over $prop_n changes: p50 ${prop_p50} ms, p99 ${prop_p99} ms, max ${prop_max} ms"

# 2. Requests/s: replica 1 (PostgreSQL) against a Teal with a SQLite state file, alternating.
curl -s -X PUT -H 'Content-Type: application/json' -d '{"blue": 2, "green": 4}' "http://127.0.0.1:${ADMINS[0]}/v1/routes/bench/split" >/dev/null
take_port SQLITE_PORT
take_port SQLITE_ADMIN
start_teal "$SQLITE_PORT" "$SQLITE_ADMIN" || die "the SQLite teal did not start"
declare -A RPS=()
for round in $(seq 1 "$ROUNDS"); do
  for target in postgres sqlite; do
    port=${PROXIES[0]}
    [[ $target == sqlite ]] && port=$SQLITE_PORT
    out=$BENCH_LOGDIR/wrk-$target-$round.txt
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/" >"$out"
    read -r rps _ _ errors < <(python3 "$BENCH_TOOL" parse-wrk "$out")
    RPS[$target]="${RPS[$target]:-} $rps"
    log "round $round $target: $rps req/s ($errors errors)"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pg_rps=$(median "${RPS[postgres]}")
sqlite_rps=$(median "${RPS[sqlite]}")
stop_pid "$TEAL_PID" || true # the SQLite Teal is done

# A helper for parts 3 and 4 (standard library only; everything on 127.0.0.1).
TOOL=$BENCH_TMP/replicas_tool.py
cat >"$TOOL" <<'PY'
import http.client, json, os, re, sys, threading, time

ROUTE = "bench"


class Admin:
    """One replica's admin API over a keep-alive connection (reopened when it breaks)."""

    def __init__(self, port):
        self.port, self.conn = int(port), None

    def request(self, method, path, body=None):
        # Only GETs are retried (once, on a fresh connection): a POST may have been carried out.
        for attempt in range(2 if method == "GET" else 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
                answer = self.conn.getresponse()
                data = answer.read()
                return answer.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1 or method != "GET":
                    raise

    def json(self, method, path, body=None):
        status, data = self.request(method, path, body)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")


def start_release(admin, body, timeout):
    """POST the release; retried while it answers 409 (the last release's driver gives its lease
    up within half a second of the end). Returns (time sent, time answered, answer)."""
    deadline = time.time() + timeout
    while True:
        sent = time.time()
        status, answer = admin.json("POST", f"/v1/routes/{ROUTE}/rollout", body)
        if status == 201:
            return sent, time.time(), answer
        if status != 409 or time.time() > deadline:
            sys.exit(f"starting the release through port {admin.port}: {status} {answer}")
        time.sleep(0.1)


def listed_driver(admin, port, since=0):
    """True when admin's /v1/replicas lists the replica with admin port `port` as driving ROUTE
    in a report made after `since` (epoch seconds)."""
    status, replicas = admin.json("GET", "/v1/replicas")
    now = time.time()
    return status == 200 and any(r["admin"] == f"127.0.0.1:{port}" and ROUTE in r["drives"] and now - r["seenSecondsAgo"] >= since
                                 for r in replicas)


def is_driver(admin):
    status, data = admin.request("GET", "/metrics")
    match = re.search(r'^teal_release_driver\{route="%s"\} (\S+)$' % ROUTE, data.decode(), re.M)
    return status == 200 and match is not None and float(match.group(1)) == 1


def last_event(admin, prefix, since):
    """The latest journal entry of ROUTE starting with `prefix` made since `since` (epoch
    seconds), waiting up to 2 s for it (the journal is written after the change)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since)) + f".{int(since % 1 * 1000):03d}Z"
    deadline = time.time() + 2
    while True:
        status, events = admin.json("GET", f"/v1/events?route={ROUTE}&since={stamp}")
        found = [e for e in events if e["text"].startswith(prefix)] if status == 200 else []
        if found:
            return f'{found[-1]["time"]} {found[-1]["text"]}'
        if time.time() > deadline:
            return f"(no journal entry starting with '{prefix}')"
        time.sleep(0.1)


def cmd_start(port, body, timeout):
    """Starts the release through `port` and waits until /v1/replicas lists that replica as its
    driver in a report made after the start (an earlier report may still name an ended release)."""
    admin = Admin(port)
    sent, answered, answer = start_release(admin, json.loads(body), float(timeout))
    print(f"started through {port} in {(answered - sent) * 1000:.1f} ms: {answer['state']} step {answer.get('step')} "
          f"split {answer['split']['blue']}/{answer['split']['green']}", file=sys.stderr)
    while not listed_driver(admin, port, since=answered):
        if time.time() - answered > float(timeout):
            sys.exit(f"/v1/replicas did not list the replica on admin port {port} as driving {ROUTE} within {timeout} s")
        time.sleep(0.05)


def cmd_settle(timeout, *ports):
    """After an abort: waits until none of the replicas on `ports` is listed as driving ROUTE,
    then one more second, so the ended release's lease has been given up (every 0.5 s) before the
    next release starts. (A release started on the same replica while that give-up is under way
    can lose its lease to it; another replica then takes it over at once.)"""
    admin, start = Admin(ports[0]), time.time()
    addresses = {f"127.0.0.1:{p}" for p in ports}
    while True:
        status, replicas = admin.json("GET", "/v1/replicas")
        if status == 200 and not any(r["admin"] in addresses and ROUTE in r["drives"] for r in replicas):
            break
        if time.time() - start > float(timeout):
            sys.exit(f"a replica was still listed as driving {ROUTE} {timeout} s after the abort")
        time.sleep(0.05)
    time.sleep(1)


def cmd_takeover(killed_at, timeout, *ports):
    """After the driver's kill: seconds until a survivor runs the release (its /metrics), and
    until its /v1/replicas lists it as the driver. Prints "run listed port"."""
    killed_at, timeout = float(killed_at), float(timeout)
    survivors = [Admin(p) for p in ports]
    driver = None
    while driver is None:
        for admin in survivors:
            if is_driver(admin):
                driver, ran = admin, time.time()
                break
        else:
            if time.time() - killed_at > timeout:
                sys.exit(f"no surviving replica took the release over within {timeout} s")
            time.sleep(0.01)
    while not listed_driver(driver, driver.port):
        if time.time() - killed_at > timeout:
            sys.exit(f"/v1/replicas did not list the new driver within {timeout} s")
        time.sleep(0.01)
    listed = time.time()
    others = [a.port for a in survivors if a is not driver and is_driver(a)]
    if others:
        sys.exit(f"two drivers: {driver.port} and {others}")
    _, view = driver.json("GET", f"/v1/routes/{ROUTE}/rollout")
    print(f"  new driver {driver.port}: {view['state']} at step {view.get('step')}; journal: {last_event(driver, 'taken over', killed_at)}",
          file=sys.stderr)
    print(f"{ran - killed_at:.3f} {listed - killed_at:.3f} {driver.port}")


def local_state(admin):
    """The state of ROUTE's release as this replica runs it (GET /v1/routes/ROUTE; not forwarded)."""
    status, view = admin.json("GET", f"/v1/routes/{ROUTE}")
    return view.get("rollout") if status == 200 else None


def cmd_abort(port):
    """Aborts through the driver. Judged by the driver's own state, not by the answer: a build
    whose answer is the release view may forward that view to a killed driver still listed."""
    admin = Admin(port)
    status, answer = admin.json("POST", f"/v1/routes/{ROUTE}/rollout/abort")
    if local_state(admin) != "aborted":
        sys.exit(f"abort through {port}: {status} {answer}; the release there is {local_state(admin)}")


def cmd_rollback(port, body, timeout, *ports):
    """Starts the failing release through `port`, polls every replica's split until all serve
    green 0 again. Prints "ms-from-green's-first-share ms-from-the-start-request sent-epoch"."""
    timeout = float(timeout)
    driver, replicas = Admin(port), [Admin(p) for p in ports]
    for admin in replicas:  # connections open before the clock starts
        admin.json("GET", f"/v1/routes/{ROUTE}")
    sent, answered, answer = start_release(driver, json.loads(body), 15)
    seen = [None] * len(replicas)  # when each replica was first seen giving green a share
    while True:
        greens = []
        for i, admin in enumerate(replicas):
            status, view = admin.json("GET", f"/v1/routes/{ROUTE}")
            now = time.time()
            if status != 200:
                sys.exit(f"GET /v1/routes/{ROUTE} on {admin.port}: {status} {view}")
            greens.append(view["split"]["green"])
            if greens[-1] > 0 and seen[i] is None:
                seen[i] = now
        # Every replica at green 0 after green had a share: once a replica has taken the release's
        # first step it leaves it only for a later state, so this is the rollback everywhere.
        if any(seen) and not any(greens):
            ended = now
            break
        if now - sent > timeout:
            sys.exit(f"the replicas did not all serve green 0 within {timeout} s (green weights {greens})")
        time.sleep(0.002)
    state = local_state(driver)
    if state != "rolled-back":
        sys.exit(f"the release ended {state}, not rolled back")
    firsts = " ".join("-" if t is None else f"{(t - sent) * 1000:.0f}" for t in seen)
    first = min(t for t in seen if t is not None)
    print(f"  start answered after {(answered - sent) * 1000:.1f} ms (split {answer['split']['blue']}/{answer['split']['green']});"
          f" each replica first seen giving green a share [{firsts}] ms after it; all at green 0 {(ended - sent) * 1000:.1f} ms"
          f" after it; journal: {last_event(driver, 'rolled back', sent)}", file=sys.stderr)
    print(f"{(ended - first) * 1000:.1f} {(ended - sent) * 1000:.1f} {sent:.6f}")


def cmd_load(rate, seconds, failures, stop, *ports):
    """LOAD: one thread per proxy port, one keep-alive connection each, `rate` GETs a second;
    every answer but 200 (or none) is a line "epoch index status" in `failures`. Runs until the
    file `stop` exists, at most `seconds`; prints "sent N failed N seconds S" at the end."""
    rate, lock = float(rate), threading.Lock()
    sent, failed = [0] * len(ports), [0] * len(ports)
    out = open(failures, "a")

    def worker(i, port):
        conn, due = None, time.monotonic()
        while True:
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
                conn.request("GET", "/")
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                sent[i] += 1
                if status != 200:
                    failed[i] += 1
                    out.write(f"{time.time():.6f} {i} {status}\n")
                    out.flush()
            due += 1 / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                due = time.monotonic()  # behind: no burst to catch up

    began = time.monotonic()
    for i, port in enumerate(ports):
        threading.Thread(target=worker, args=(i, port), daemon=True).start()
    while time.monotonic() - began < float(seconds) and not os.path.exists(stop):
        time.sleep(0.1)
    with lock:
        print(f"sent {sum(sent)} failed {sum(failed)} seconds {time.monotonic() - began:.1f} per proxy {sent} {failed}", flush=True)
        os._exit(0)


def cmd_stats(*values):
    """ "n p50 max" of the values (p50 as part 1 picks it)."""
    v = sorted(float(x) for x in values)
    print(f"{len(v)} {v[min(len(v) - 1, len(v) // 2)]:g} {v[-1]:g}")


commands = {"start": cmd_start, "settle": cmd_settle, "takeover": cmd_takeover, "abort": cmd_abort,
            "rollback": cmd_rollback, "load": cmd_load, "stats": cmd_stats}
commands[sys.argv[1]](*sys.argv[2:])
PY

# 3. Driver take-over after kill -9 of the driver.
now_epoch() { printf '%s' "${EPOCHREALTIME/,/.}"; }
TAKEOVER_RUN=()
TAKEOVER_LISTED=()
for round in $(seq 1 "$KILLS"); do
  idx=$(((round - 1) % 3))
  python3 "$TOOL" start "${ADMINS[idx]}" '{"steps": ["2/4", "0/6"], "hold": "1h"}' 15 2>>"$BENCH_LOGDIR/takeover.txt" ||
    die "round $round: the release did not start or its driver was not listed (see $BENCH_LOGDIR/takeover.txt)"
  pid=${REPLICA_PIDS[idx]}
  is_our_child "$pid" || die "replica $((idx + 1)) (pid $pid) is not running"
  survivors=()
  for j in 0 1 2; do
    ((j == idx)) || survivors+=("${ADMINS[j]}")
  done
  killed_at=$(now_epoch)
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
  read -r run listed driver < <(python3 "$TOOL" takeover "$killed_at" 30 "${survivors[@]}" 2>>"$BENCH_LOGDIR/takeover.txt") ||
    die "round $round: no take-over (see $BENCH_LOGDIR/takeover.txt)"
  [[ -n ${driver:-} ]] || die "round $round: no take-over (see $BENCH_LOGDIR/takeover.txt)"
  # The lease outlives its last renewal by 3.5-4 s: a quicker take-over means it was not held.
  awk -v t="$run" 'BEGIN { exit !(t < 3.4) }' && log "warning: round $round: taken over after only $run s; the lease was not held at the kill"
  TAKEOVER_RUN+=("$run")
  TAKEOVER_LISTED+=("$listed")
  echo "round $round: killed the driver on admin port ${ADMINS[idx]}; port $driver runs the release after $run s, listed after $listed s" \
    >>"$BENCH_LOGDIR/takeover.txt"
  log "take-over $round/$KILLS: driver on ${ADMINS[idx]} killed; $driver runs the release after $run s (listed in /v1/replicas after $listed s)"
  start_replica "$idx" "teal-replica-$((idx + 1))-after-kill-$round"
  python3 "$TOOL" abort "$driver" || die "round $round: the release could not be aborted"
  python3 "$TOOL" settle 15 "${ADMINS[@]}" || die "round $round: the aborted release's driver stays listed"
done
read -r takeover_n takeover_p50 takeover_max < <(python3 "$TOOL" stats "${TAKEOVER_RUN[@]}")
read -r _ listed_p50 listed_max < <(python3 "$TOOL" stats "${TAKEOVER_LISTED[@]}")
log "take-over over $takeover_n kills: p50 $takeover_p50 s, max $takeover_max s (listed: p50 $listed_p50 s, max $listed_max s)"

# 4. Rollback of a failing green across the three replicas, under load on all three.
BAD_GREEN=()
for i in 1 2 3; do
  take_port port
  start_bg "green-failing-$i" "$TEAL_BIN" demo-backend --listen "127.0.0.1:$port" --name "failing-$i" --error-rate 1
  for ((t = 0; t < 100; t++)); do
    [[ $(http_status "http://127.0.0.1:$port/") == 500 ]] && break
    is_running "$STARTED_PID" || die "failing green instance $i exited (see $BENCH_LOGDIR)"
    sleep 0.1
  done
  [[ $(http_status "http://127.0.0.1:$port/") == 500 ]] || die "failing green instance $i does not answer 500"
  BAD_GREEN+=("\"127.0.0.1:$port\"")
done
rollback_body=$(printf '{"green": {"version": "failing", "instances": [%s]}, "steps": ["2/4", "0/6"], "hold": "60s", "maxErrorRate": 0.05, "minRequests": 20}' \
  "$(IFS=,; echo "${BAD_GREEN[*]}")")
FAILURES=$BENCH_LOGDIR/rollback-failures.txt
: >"$FAILURES"
LOAD_STOP=$BENCH_TMP/load-stop
start_bg rollback-load python3 "$TOOL" load "$LOAD_RATE" $((ROLLBACKS * 60 + 60)) "$FAILURES" "$LOAD_STOP" "${PROXIES[@]}"
LOAD_PID=$STARTED_PID
sleep 2 # the load runs before the first release
[[ ! -s $FAILURES ]] || die "requests fail before any release (see $FAILURES)"
ROLLBACK_MS=()
ROLLBACK_FROM_START=()
ROLLBACK_FAILED=()
for run in $(seq 1 "$ROLLBACKS"); do
  idx=$(((run - 1) % 3))
  read -r ms from_start sent < <(python3 "$TOOL" rollback "${ADMINS[idx]}" "$rollback_body" 30 "${ADMINS[@]}" 2>>"$BENCH_LOGDIR/rollback.txt") ||
    die "rollback run $run failed (see $BENCH_LOGDIR/rollback.txt)"
  [[ -n ${sent:-} ]] || die "rollback run $run failed (see $BENCH_LOGDIR/rollback.txt)"
  sleep 1 # requests in flight at the rollback finish
  failed=$(awk -v from="$sent" '$1 >= from' "$FAILURES" | wc -l)
  ROLLBACK_MS+=("$ms")
  ROLLBACK_FROM_START+=("$from_start")
  ROLLBACK_FAILED+=("$failed")
  echo "run $run: started through admin port ${ADMINS[idx]}; all replicas at green 0 $ms ms after green's first share" \
    "($from_start ms after the start request); $failed failed requests" >>"$BENCH_LOGDIR/rollback.txt"
  log "rollback $run/$ROLLBACKS: all three replicas at green 0 $ms ms after green's first share ($from_start ms after the start request); $failed failed requests"
done
touch "$LOAD_STOP"
for ((t = 0; t < 50; t++)); do
  is_running "$LOAD_PID" || break
  sleep 0.1
done
stop_pid "$LOAD_PID" || true
read -r _ load_sent _ load_failed _ load_seconds _ < <(tail -n 1 "$BENCH_LOGDIR/rollback-load.log") || true
[[ -n ${load_seconds:-} ]] || die "the load client did not report (see $BENCH_LOGDIR/rollback-load.log)"
load_rate=$(awk -v n="$load_sent" -v s="$load_seconds" 'BEGIN { printf "%.0f", n / s / 3 }')
log "load client: $load_sent requests in $load_seconds s ($load_rate req/s per replica), $load_failed failed"
read -r rollback_n rollback_p50 rollback_max < <(python3 "$TOOL" stats "${ROLLBACK_MS[@]}")
read -r _ start_p50 start_max < <(python3 "$TOOL" stats "${ROLLBACK_FROM_START[@]}")
read -r _ failed_p50 failed_max < <(python3 "$TOOL" stats "${ROLLBACK_FAILED[@]}")
log "rollback over $rollback_n runs: p50 $rollback_p50 ms, max $rollback_max ms from green's first share" \
  "(from the start request: p50 $start_p50 ms, max $start_max ms); failed requests per run p50 $failed_p50, max $failed_max"
"$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1 && "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true

section=$BENCH_TMP/section.md
cat >"$section" <<EOF
## Replicas

\`benchmarks/replicas.sh\` (CHANGES=$CHANGES ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS KILLS=$KILLS ROLLBACKS=$ROLLBACKS LOAD_RATE=$LOAD_RATE), $(date -u +%Y-%m-%d), $(git_desc),
$(nproc) cores, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on the same machine (default durability).
Three \`teal serve\` replicas on one database.

| measure | value |
|---|---|
| split propagation to the two other replicas, $prop_n changes: p50 / p99 / max | $prop_p50 ms / $prop_p99 ms / $prop_max ms |
| req/s of one replica, state in PostgreSQL (median of $ROUNDS × ${DURATION} s, wrk -c$CONNS) | $pg_rps |
| req/s of one Teal, state in a SQLite file (same rounds, alternating) | $sqlite_rps |
| driver take-over after \`kill -9\` of the driver, $takeover_n kills: p50 / max | $takeover_p50 s / $takeover_max s |
| the same, until the new driver's \`/v1/replicas\` lists it: p50 / max | $listed_p50 s / $listed_max s |
| rollback of an all-failing green, from its first share until all three replicas serve green 0, $rollback_n runs: p50 / max | $rollback_p50 ms / $rollback_max ms |
| the same, from the start request: p50 / max | $start_p50 ms / $start_max ms |
| failed requests per rollback run, $load_rate req/s on each replica: p50 / max | $failed_p50 / $failed_max |

Propagation is measured from the writer's answer to the moment both other replicas' admin API
shows the new split (a replica shows it once taken, and its event loops route by it right after).

Take-over: a release (plan 2/4 → 0/6, 1 h hold, so it stays at step 1) is started through one
replica, a different one each round; once \`/v1/replicas\` lists that replica as its driver, it is
killed with SIGKILL. Timed from the kill until a surviving replica runs the release (its
\`/metrics\` shows \`teal_release_driver{route="bench"} 1\`, polled every 10 ms). The lease is 4 s
long and renewed every 0.5 s, and survivors look for unheld leases every 0.5 s, so about 3.5–4.5 s.
Replicas report themselves every second, so \`/v1/replicas\` lists the new driver up to 1 s later.
After each kill a replica is started in place of the killed one and the release aborted.

Rollback: each replica's proxy gets a paced load (asked $LOAD_RATE req/s, got $load_rate; one
keep-alive connection each) while a release of a green pool that answers every request with 500
(three \`teal demo-backend --error-rate 1\`; plan 2/4 → 0/6, maxErrorRate 5%, minRequests 20) is
started through a different replica each run. All three replicas' \`GET /v1/routes/bench\` are
polled in turn (a sweep every ~2 ms); timed from the first sweep that finds green with a share on
any replica (step 1, 2/4) until the first sweep that finds green weight 0 on all three, and also
from sending the start request. Each run must end rolled back. Failed requests: answers other than
200 (green's 500s) or none, from the start request until 1 s after the rollback.
EOF
results=${RESULTS:-$RESULTS_MD}
[[ -e $results ]] || : >"$results" # a scratch RESULTS= file may not exist yet
python3 "$BENCH_TOOL" put-section --body "$section" "$results"
cat "$section"
