#!/usr/bin/env python3
"""Small helpers for benchmarks/run.sh and benchmarks/allocs.sh.

Subcommands:
  free-ports N                      print N distinct free TCP ports on 127.0.0.1
  parse-wrk FILE                    print "req/s p50_ms p99_ms errors" (tab separated)
  spread PORT N                     send N keep-alive GETs, count replies per X-Backend
  client PORT N                     send exactly N keep-alive GETs over one connection
  ensure-results FILE               create RESULTS.md skeleton / add missing sections
  report FILE --meta M --runs R --status S
                                    rewrite the generated block of RESULTS.md
  allocs-section FILE --body B      replace the body of "## Allocations per proxied request"
  put-section FILE --body B         replace or insert the `## ` section that B starts with
  perf-modules FILE                 share of samples per Swift module in `perf script` output
  chunked-body CHUNKS SIZE FORM     print a chunked body, FORM canonical or ext (chunk lines with
                                    leading zeros, upper-case hex and extensions)
  chunked-upload PORT FILE          POST FILE (a chunked body) to /upload, print "status body-length"
  chunked-section --meta M --runs R --checks C
                                    print the "## Chunked bodies" section of RESULTS.md

Only the standard library is used. All network traffic goes to 127.0.0.1.
"""

import argparse
import http.client
import re
import socket
import statistics
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
ALLOCS_HEADING = "## Allocations per proxied request"
PROFILE_HEADING = "## Profile"
PLACEHOLDER = "not measured yet"
HOST = "127.0.0.1"

# Order in which targets are run and shown; names match run.sh.
TARGETS = [("direct", "direct (one backend)"), ("nginx", "nginx"),
           ("haproxy", "HAProxy"), ("teal", "Teal")]


def target_label(key):
    """The table label of a target; teal-NAME (run.sh with TEAL_BINS) is "Teal NAME"."""
    labels = dict(TARGETS)
    if key in labels:
        return labels[key]
    return "Teal " + key[len("teal-"):] if key.startswith("teal-") else key


# --------------------------------------------------------------------------- ports

def cmd_free_ports(args):
    socks = []
    try:
        # Hold all sockets open at once so the kernel hands out distinct ports.
        for _ in range(args.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(value, unit):
    return float(value) * _UNIT_MS[unit]


def parse_wrk(text):
    """Return (req_per_s, p50_ms, p99_ms, errors) from `wrk --latency` output."""
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec:' line")
    rps = float(m.group(1))
    pct = {}
    for p, val, unit in re.findall(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$",
                                   text, re.M):
        pct[p] = to_ms(val, unit)
    if "50" not in pct or "99" not in pct:
        raise ValueError("no latency distribution (was --latency given?)")
    errors = 0
    m = re.search(r"Socket errors:\s*connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        errors += int(m.group(1))
    return rps, pct["50"], pct["99"], errors


def cmd_parse_wrk(args):
    with open(args.file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        rps, p50, p99, errors = parse_wrk(text)
    except ValueError as e:
        print(f"cannot parse {args.file}: {e}", file=sys.stderr)
        return 1
    print(f"{rps:.2f}\t{p50:.3f}\t{p99:.3f}\t{errors}")
    return 0


# --------------------------------------------------------------------------- clients

def _get(conn):
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    return resp


def cmd_spread(args):
    counts = {}
    bad = 0
    conn = http.client.HTTPConnection(HOST, args.port, timeout=5)
    try:
        for _ in range(args.n):
            resp = _get(conn)
            if resp.status != 200:
                bad += 1
            name = resp.getheader("X-Backend", "?")
            counts[name] = counts.get(name, 0) + 1
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection(HOST, args.port, timeout=5)
    finally:
        conn.close()
    parts = [f"{k}={counts[k]}" for k in sorted(counts)]
    if bad:
        parts.append(f"non-200={bad}")
    print(" ".join(parts))
    return 0


def cmd_client(args):
    """Exactly N sequential requests over one keep-alive connection."""
    conn = http.client.HTTPConnection(HOST, args.port, timeout=10)
    ok = bad = reconnects = 0
    try:
        for _ in range(args.n):
            try:
                resp = _get(conn)
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                print(f"request failed after {ok + bad} requests: {e!r}", file=sys.stderr)
                return 1
            if resp.status == 200:
                ok += 1
            else:
                bad += 1
            if resp.will_close:
                # The proxy closed the connection; count it, the total stays exact.
                reconnects += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, args.port, timeout=10)
    finally:
        conn.close()
    print(f"sent={args.n} ok={ok} non200={bad} reconnects={reconnects}")
    return 0 if bad == 0 else 1


# --------------------------------------------------------------------------- RESULTS.md

def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def ensure_results(path):
    text = _read(path)
    if text is None:
        text = "# Teal benchmark results\n\n"
    if BEGIN not in text or END not in text:
        block = f"{BEGIN}\nNo throughput run yet: run `benchmarks/run.sh`.\n{END}\n\n"
        # Put the generated block after the title line if there is one.
        m = re.match(r"(# [^\n]*\n\n?)", text)
        if m:
            text = text[:m.end()] + block + text[m.end():]
        else:
            text = block + text
    if not re.search(r"^" + re.escape(ALLOCS_HEADING) + r"\s*$", text, re.M):
        text = text.rstrip("\n") + f"\n\n{ALLOCS_HEADING}\n\n{PLACEHOLDER}\n"
    if not re.search(r"^" + re.escape(PROFILE_HEADING) + r"\s*$", text, re.M):
        text = text.rstrip("\n") + f"\n\n{PROFILE_HEADING}\n\n{PLACEHOLDER}\n"
    _write(path, text)
    return text


def cmd_ensure_results(args):
    ensure_results(args.file)
    return 0


def _read_kv(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def _read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                rows.append(line.split("\t"))
    return rows


def _fmt_int(x):
    return f"{x:,.0f}".replace(",", " ")


def _fmt_ms(x):
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def build_block(meta, runs, status, targets=TARGETS):
    """runs: rows [target, round, rps, p50, p99, errors]; status: {target: text};
    targets: [(key, label)] in the order they ran."""
    by_target = {}
    for target, rnd, rps, p50, p99, err in runs:
        by_target.setdefault(target, []).append(
            (int(rnd), float(rps), float(p50), float(p99), int(err)))
    medians = {t: statistics.median(r[1] for r in rows) for t, rows in by_target.items()}
    nginx = medians.get("nginx")

    L = []
    L.append("## Throughput and latency")
    L.append("")
    L.append(f"Generated by `benchmarks/run.sh` on {meta.get('date', '?')}; "
             "do not edit between the bench markers, the next run replaces it.")
    L.append("")
    L.append("Machine:")
    L.append("")
    L.append(f"- CPU: {meta.get('cpu', '?')}; `nproc` = {meta.get('nproc', '?')}")
    L.append(f"- kernel: {meta.get('kernel', '?')}")
    L.append(f"- Swift: {meta.get('swift', '?')}")
    L.append(f"- nginx: {meta.get('nginx', '?')}; HAProxy: {meta.get('haproxy', '?')}; "
             f"wrk: {meta.get('wrk', '?')}")
    if meta.get("teal_bins"):
        L.append(f"- Teal binaries: {meta['teal_bins']}")
    else:
        L.append(f"- Teal binary: `{meta.get('teal_bin', '?')}` (source: {meta.get('git', '?')})")
    L.append("")
    L.append("Method:")
    L.append("")
    L.append(f"- command: `{meta.get('command', '?')}`")
    L.append(f"- each measurement: `{meta.get('wrk_cmd', '?')}`; "
             f"{meta.get('rounds', '?')} round(s); each round runs every target once, one at a time, "
             f"in the order {', '.join('direct' if k == 'direct' else label for k, label in targets)} rotated by one place per round; "
             f"{meta.get('warmup', '0')} s unmeasured warm-up per target before round 1")
    L.append("- backends: one nginx (1 worker) serving 6 ports on 127.0.0.1, each answering 200 "
             "with its name (`b1\\n` … `b6\\n`) and `X-Backend`; blue = b1–b3, green = b4–b6")
    L.append(f"- proxies: {meta.get('workers', '1')} worker/thread each, keep-alive on both hops, "
             "no access logs, no active health checks; blue:green = 2:4 "
             "(nginx/HAProxy: weight 2 per blue and 4 per green instance; Teal: `split: 2/4`); "
             f"nginx `keepalive {meta.get('nginx_keepalive', '?')}` idle upstream connections, "
             "HAProxy `http-reuse always`; configs are in the output directory")
    L.append("- everything (wrk, proxy, backends) shares the same cores, equally for every target")
    L.append(f"- raw wrk output and configs: `{meta.get('outdir', '?')}` (git-ignored)")
    L.append("")
    L.append("| target | req/s median | req/s min–max | p50 ms | p99 ms | errors | × nginx |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for key, label in targets:
        rows = by_target.get(key)
        st = status.get(key, "not run")
        if not rows:
            L.append(f"| {label} | {st if st != 'ok' else 'no data'} | – | – | – | – | – |")
            continue
        rps = [r[1] for r in rows]
        med = medians[key]
        ratio = f"{med / nginx:.2f}" if nginx else "n/a"
        L.append("| {} | {} | {}–{} | {} | {} | {} | {} |".format(
            label + ("" if st == "ok" else f" ({st})"),
            _fmt_int(med), _fmt_int(min(rps)), _fmt_int(max(rps)),
            _fmt_ms(statistics.median(r[2] for r in rows)),
            _fmt_ms(statistics.median(r[3] for r in rows)),
            sum(r[4] for r in rows), ratio))
    L.append("")
    L.append("p50/p99: median over rounds of wrk's per-run percentiles. "
             "errors: socket errors plus non-2xx/3xx responses, summed over rounds.")
    L.append("")
    nrounds = max((r[0] for rows in by_target.values() for r in rows), default=0)
    if nrounds > 1:
        L.append("Per-round req/s:")
        L.append("")
        L.append("| target | " + " | ".join(f"round {i}" for i in range(1, nrounds + 1)) + " |")
        L.append("|---|" + "---:|" * nrounds)
        for key, label in targets:
            rows = {r[0]: r[1] for r in by_target.get(key, [])}
            if rows:
                L.append(f"| {label} | " + " | ".join(
                    _fmt_int(rows[i]) if i in rows else "–" for i in range(1, nrounds + 1)) + " |")
        L.append("")
    spread = [(label, meta.get("spread_" + key)) for key, label in targets
              if key != "direct" and meta.get("spread_" + key)]
    if spread:
        L.append(f"Traffic spread check before measuring ({meta.get('spread_n', '?')} "
                 "sequential requests per proxy, replies counted by `X-Backend`; "
                 "2:4 means b1–b3 get 1/3 together):")
        L.append("")
        for label, s in spread:
            L.append(f"- {label}: {s}")
        L.append("")
    return "\n".join(L)


def cmd_report(args):
    text = ensure_results(args.file)
    meta = _read_kv(args.meta)
    runs = _read_tsv(args.runs)
    rows = _read_tsv(args.status)
    status = {row[0]: (row[1] if len(row) > 1 else "?") for row in rows}
    # status.tsv lists the targets in the order run.sh ran them.
    block = build_block(meta, runs, status, [(row[0], target_label(row[0])) for row in rows])
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    text = text[:start] + "\n" + block + "\n" + text[end:]
    _write(args.file, text)
    return 0


def cmd_allocs_section(args):
    text = ensure_results(args.file)
    with open(args.body, encoding="utf-8") as f:
        body = f.read().strip("\n")
    m = re.search(r"^" + re.escape(ALLOCS_HEADING) + r"[ \t]*\n", text, re.M)
    nxt = re.compile(r"^## ", re.M).search(text, m.end())
    tail_start = nxt.start() if nxt else len(text)
    tail = text[tail_start:]
    text = text[:m.end()] + "\n" + body + "\n" + ("\n" + tail if tail else "")
    _write(args.file, text)
    return 0


def cmd_put_section(args):
    """Replaces the `## ` section whose heading is the body's first line, or inserts the body
    before `## Profile` (else at the end)."""
    text = _read(args.file)
    with open(args.body, encoding="utf-8") as f:
        body = f.read().strip("\n") + "\n"
    heading = body.splitlines()[0]
    # The heading as a whole line ("## Chunked bodies" must not match "### Chunked bodies (...)").
    match = re.search("^" + re.escape(heading) + "$", text, re.MULTILINE)
    start = match.start() if match else -1
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + ("" if end < 0 else text[end:])
    else:
        marker = text.find("## Profile")
        text = text[:marker] + body + "\n" + text[marker:] if marker >= 0 else text.rstrip("\n") + "\n\n" + body
    _write(args.file, text)
    return 0


# --------------------------------------------------------------------------- chunked bodies

CHUNKED_CASES = {
    "cl": "answer with Content-Length (same body bytes, no chunking; reference)",
    "canonical": "chunked answer, canonical chunk lines (`bb8\\r\\n`)",
    "ext": "chunked answer, chunk lines `00BB8;ext=N\\r\\n`, last chunk `000;last=yes`",
    "upload": "POST, chunked upload with canonical chunk lines, small answer",
    "upload-ext": "POST, chunked upload with chunk lines `00BB8;ext=1\\r\\n`, small answer",
}


def chunked_body(chunks, size, form):
    parts = []
    for _ in range(chunks):
        line = f"00{size:X};ext=1\r\n" if form == "ext" else f"{size:x}\r\n"
        parts.append(line.encode() + b"u" * size + b"\r\n")
    parts.append(b"000;last=1\r\n\r\n" if form == "ext" else b"0\r\n\r\n")
    return b"".join(parts)


def cmd_chunked_body(args):
    if args.form not in ("canonical", "ext"):
        print("FORM must be canonical or ext", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(chunked_body(args.chunks, args.size, args.form))
    return 0


def cmd_chunked_upload(args):
    """One chunked POST over its own connection; prints the status and X-Body-Length."""
    with open(args.file, "rb") as f:
        body = f.read()
    head = (f"POST /upload HTTP/1.1\r\nHost: {HOST}:{args.port}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    data = b""
    with socket.create_connection((HOST, args.port), timeout=5) as s:
        s.sendall(head + body)
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "?"
    length = next((l.split(":", 1)[1].strip() for l in lines[1:]
                   if l.lower().startswith("x-body-length:")), "?")
    print(f"{status} {length}")
    return 0


def build_chunked_section(meta, runs, checks):
    """runs: rows [case, target, round, rps, p50, p99, errors, cpu_us]."""
    cells = {}
    for case, target, _rnd, rps, p50, p99, err, cpu in runs:
        cells.setdefault((case, target), []).append(
            (float(rps), float(p50), float(p99), int(err), float(cpu)))
    cases = list(dict.fromkeys(r[0] for r in runs))
    targets = list(dict.fromkeys(r[1] for r in runs))
    teals = [t for t in targets if t.startswith("teal")]
    med = statistics.median
    L = ["## Chunked bodies", ""]
    L.append(f"Generated by `benchmarks/chunked.sh` on {meta.get('date', '?')}; "
             "the next run replaces this section.")
    L.append("")
    L.append(f"- machine: {meta.get('machine', '?')}")
    L.append(f"- Teal: {meta.get('teal_bins', '?')}")
    L.append(f"- command: `{meta.get('command', '?')}`")
    L.append(f"- each measurement: `{meta.get('wrk_cmd', '?')}` against one target, the order of "
             "the targets rotated by one place per round; CPU: user + system time of the proxy "
             "process (`/proc/PID/stat`) over the run divided by the requests wrk completed")
    L.append("- backend: `benchmarks/chunked_backend.c`, one epoll thread on six ports (blue "
             "b1–b3, green b4–b6; nginx and HAProxy weight 2/4, Teal `split: 2/4`); body: "
             f"{meta.get('body', '?')}; uploads are sent by a wrk Lua script that builds the "
             "request itself (a Lua call per request in wrk, the same for every target)")
    L.append(f"- raw output: `{meta.get('outdir', '?')}` (git-ignored)")
    L.append("")
    L.append("Cases:")
    L.append("")
    for c in cases:
        L.append(f"- `{c}`: {CHUNKED_CASES.get(c, c)}")
    L.append("")
    base = teals[0] if len(teals) > 1 else None
    L.append("| case | target | req/s median | req/s min–max | p50 ms | p99 ms | CPU µs/req median "
             "| CPU min–max | errors |" + (f" CPU vs {base} |" if base else ""))
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if base else ""))
    for c in cases:
        for t in targets:
            rows = cells.get((c, t))
            if not rows:
                continue
            cpu = [r[4] for r in rows]
            rps = [r[0] for r in rows]
            extra = ""
            if base:
                extra = " – |"
                if t in teals and t != base and (c, base) in cells:
                    b = med(r[4] for r in cells[(c, base)])
                    d = med(cpu) - b
                    extra = f" {d:+.2f} µs ({100 * d / b:+.1f}%) |"
            L.append(f"| {c} | {target_label(t)} | {_fmt_int(med(rps))} | {_fmt_int(min(rps))}–"
                     f"{_fmt_int(max(rps))} | {_fmt_ms(med(r[1] for r in rows))} | "
                     f"{_fmt_ms(med(r[2] for r in rows))} | {med(cpu):.2f} | {min(cpu):.2f}–"
                     f"{max(cpu):.2f} | {sum(r[3] for r in rows)} |" + extra)
    L.append("")
    L.append("Checks before measuring (every body compared with the backend's by sha256; the first "
             "chunk line as the client received it):")
    L.append("")
    L.append("```")
    L.extend(checks)
    L.append("```")
    return "\n".join(L) + "\n"


def cmd_chunked_section(args):
    with open(args.checks, encoding="utf-8") as f:
        checks = [l.rstrip("\n") for l in f if l.strip()]
    sys.stdout.write(build_chunked_section(_read_kv(args.meta), _read_tsv(args.runs), checks))
    return 0


# --------------------------------------------------------------------------- profiles

MANGLED_MODULE = re.compile(r"\$s(\d+)(\w+)")


def _module_of(symbol, dso):
    """The module a sampled frame belongs to: "kernel", "BoringSSL", a Swift module decoded from
    the mangled name's first identifier, or None for runtime and C library frames."""
    if "[kernel" in dso:
        return "kernel"
    if "BoringSSL" in symbol or symbol.startswith("bssl::"):
        return "BoringSSL"
    m = MANGLED_MODULE.match(symbol)
    if not m:
        return None
    length, rest = int(m.group(1)), m.group(2)
    name = rest[:length]
    # $sS... and $ss... are the standard library
    return None if len(name) < length or name in ("s", "S") else name


def cmd_perf_modules(args):
    """Reads `perf script -F ip,sym,dso` output recorded with call graphs and charges each sample
    to the innermost frame that belongs to a module, so the Swift runtime's retain/release and
    malloc count for the code that called them. Prints one line per module."""
    charged, samples, frames = {}, 0, []

    def finish():
        nonlocal samples
        if not frames:
            return
        samples += 1
        owner = next((m for m in (_module_of(sym, dso) for sym, dso in frames) if m), "other")
        charged[owner] = charged.get(owner, 0) + 1

    with open(args.file, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                finish()
                frames = []
                continue
            if not line[0].isspace():
                finish()
                frames = []
                continue
            fields = line.strip().split(" ", 1)
            if len(fields) == 2:
                sym, _, dso = fields[1].rpartition(" (")
                frames.append((sym, dso))
    finish()
    print(f"{samples} samples")
    for name, count in sorted(charged.items(), key=lambda kv: -kv[1]):
        print(f"{100 * count / max(samples, 1):6.2f}%  {name}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("free-ports"); p.add_argument("n", type=int); p.set_defaults(f=cmd_free_ports)
    p = sub.add_parser("parse-wrk"); p.add_argument("file"); p.set_defaults(f=cmd_parse_wrk)
    p = sub.add_parser("spread"); p.add_argument("port", type=int); p.add_argument("n", type=int)
    p.set_defaults(f=cmd_spread)
    p = sub.add_parser("client"); p.add_argument("port", type=int); p.add_argument("n", type=int)
    p.set_defaults(f=cmd_client)
    p = sub.add_parser("ensure-results"); p.add_argument("file"); p.set_defaults(f=cmd_ensure_results)
    p = sub.add_parser("report"); p.add_argument("file")
    p.add_argument("--meta", required=True); p.add_argument("--runs", required=True)
    p.add_argument("--status", required=True); p.set_defaults(f=cmd_report)
    p = sub.add_parser("allocs-section"); p.add_argument("file")
    p.add_argument("--body", required=True); p.set_defaults(f=cmd_allocs_section)
    p = sub.add_parser("put-section"); p.add_argument("file")
    p.add_argument("--body", required=True); p.set_defaults(f=cmd_put_section)
    p = sub.add_parser("perf-modules"); p.add_argument("file"); p.set_defaults(f=cmd_perf_modules)
    p = sub.add_parser("chunked-body"); p.add_argument("chunks", type=int)
    p.add_argument("size", type=int); p.add_argument("form"); p.set_defaults(f=cmd_chunked_body)
    p = sub.add_parser("chunked-upload"); p.add_argument("port", type=int); p.add_argument("file")
    p.set_defaults(f=cmd_chunked_upload)
    p = sub.add_parser("chunked-section"); p.add_argument("--meta", required=True)
    p.add_argument("--runs", required=True); p.add_argument("--checks", required=True)
    p.set_defaults(f=cmd_chunked_section)
    args = ap.parse_args()
    return args.f(args) or 0


if __name__ == "__main__":
    sys.exit(main())
