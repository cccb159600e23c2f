#!/usr/bin/env bash
# Replicas benchmark (issue 16): three `teal serve` replicas on one PostgreSQL database.
#
# 1. Split propagation: CHANGES splits set one after another through replica 1's admin API; for
#    each, the time from the API's answer until replicas 2 and 3 both serve it (their admin API
#    polled every millisecond over keep-alive connections). p50, p99 and max.
# 2. Requests/s of one replica with its state in PostgreSQL and of one with a SQLite state file,
#    same backends, wrk alternating between them ROUNDS times (the store is off the request path,
#    so they should be equal).
#
# Writes the "Replicas" section of benchmarks/RESULTS.md. Everything on 127.0.0.1; every process
# it starts (backends, PostgreSQL, the Teals) is stopped on exit.
# Env: CHANGES=200 ROUNDS=3 DURATION=10 CONNS=64 TEAL_BIN=... RESULTS=file to write instead of RESULTS.md
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

CHANGES=${CHANGES:-200}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

bench_init "$PKG_ROOT/benchmarks/out/replicas-$(date +%Y%m%d-%H%M%S)"
ensure_tools wrk nginx curl python3
if [[ ! -x $PG_BIN/initdb ]]; then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi
teal_binary || die "no Teal binary"

reserve_ports 16
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
for i in 1 2 3; do
  take_port proxy
  take_port admin
  start_bg "teal-replica-$i" "$TEAL_BIN" serve --routes "$ROUTES" --listen "127.0.0.1:$proxy" --admin "127.0.0.1:$admin" \
    --state "$STATE" --threads "${WORKERS:-1}"
  wait_http "http://127.0.0.1:$proxy/" "$STARTED_PID" 30 || die "replica $i did not start (see $BENCH_LOGDIR)"
  ADMINS+=("$admin")
  PROXIES+=("$proxy")
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

"$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1 && "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true

section=$BENCH_TMP/section.md
cat >"$section" <<EOF
## Replicas

\`benchmarks/replicas.sh\` (CHANGES=$CHANGES ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS), $(date -u +%Y-%m-%d), $(git_desc),
$(nproc) cores, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on the same machine (default durability).
Three \`teal serve\` replicas on one database.

| measure | value |
|---|---|
| split propagation to the two other replicas, $prop_n changes: p50 / p99 / max | $prop_p50 ms / $prop_p99 ms / $prop_max ms |
| req/s of one replica, state in PostgreSQL (median of $ROUNDS × ${DURATION} s, wrk -c$CONNS) | $pg_rps |
| req/s of one Teal, state in a SQLite file (same rounds, alternating) | $sqlite_rps |

Propagation is measured from the writer's answer to the moment both other replicas' admin API
shows the new split (a replica shows it once taken, and its event loops route by it right after).
EOF
python3 "$BENCH_TOOL" put-section --body "$section" "${RESULTS:-$RESULTS_MD}"
cat "$section"
