"""The reference side of DifferentialFramingTests: reads cases (one JSON object a line) of what
Teal forwarded and what Teal itself made of it, parses the forwarded bytes with h11 (a strict
HTTP/1.1 parser) and prints one line a case: "ok", or "disagree <why>".

Request cases:  {"k": "q", "reqs": [{"fwd": b64, "m": method, "t": target, "h": host, "b": b64 body}]}
  Each request's forwarded bytes, fed to a fresh server-side connection, must give exactly one
  complete request with that method, target, Host and body, and no bytes left over.
Cases Teal cut off midway (the client connection closes) come as {"k": "skip"}.
Response cases: {"k": "r", "m": method, "fwd": b64, "eof": bool, "interim": n, "s": status, "b": b64}
  The bytes Teal sent the client for one request, fed to a fresh client-side connection (then
  end of file when "eof"), must give n interim answers, then one answer with that status and
  body, and no bytes left over.
"""
import base64
import json
import sys

import h11


def one_message(conn):
    """The events of one message, up to its end (or as far as the bytes go)."""
    got = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return got
        got.append(event)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return got


def body_and_rest(conn, got, expected_b64, what):
    """The problem with a parsed message's body or with bytes after it, or None."""
    body = b"".join(bytes(e.data) for e in got if isinstance(e, h11.Data))
    expected = base64.b64decode(expected_b64)
    if body != expected:
        return "body %r != %r" % (body[:100], expected[:100])
    leftover, _ = conn.trailing_data
    if leftover:
        return "bytes after the %s: %r" % (what, leftover[:100])
    return None


def check_request(req):
    data = base64.b64decode(req["fwd"])
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    conn.receive_data(data)
    try:
        got = one_message(conn)
    except h11.RemoteProtocolError as error:
        return "h11 refuses the forwarded request: %s: %r" % (error, data[:300])
    if not got or not isinstance(got[0], h11.Request):
        return "no request in %r" % data[:300]
    if not isinstance(got[-1], h11.EndOfMessage):
        return "request incomplete under h11: %r" % data[:300]
    head = got[0]
    if head.method.decode("latin-1") != req["m"]:
        return "method %r != %r" % (head.method, req["m"])
    if head.target.decode("latin-1") != req["t"]:
        return "target %r != %r" % (head.target, req["t"])
    hosts = [v.decode("latin-1") for n, v in head.headers if n == b"host"]
    expected_hosts = [req["h"]] if req["h"] is not None else []
    if hosts != expected_hosts:
        return "host %r != %r" % (hosts, expected_hosts)
    return body_and_rest(conn, got, req["b"], "request")


def check_response(case):
    data = base64.b64decode(case["fwd"])
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
    conn.send(h11.Request(method=case["m"], target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if case["eof"]:
        conn.receive_data(b"")
    try:
        got = one_message(conn)
    except h11.RemoteProtocolError as error:
        return "h11 refuses the answer: %s: %r" % (error, data[:300])
    interim = [e for e in got if isinstance(e, h11.InformationalResponse)]
    finals = [e for e in got if isinstance(e, h11.Response)]
    if len(interim) != case["interim"]:
        return "%d interim answers, teal sent %d" % (len(interim), case["interim"])
    if len(finals) != 1 or finals[0].status_code != case["s"]:
        return "answer %r, teal sent status %d: %r" % (finals, case["s"], data[:300])
    if not got or not isinstance(got[-1], h11.EndOfMessage):
        return "answer incomplete under h11: %r" % data[:300]
    return body_and_rest(conn, got, case["b"], "answer")


def main():
    out = sys.stdout
    for line in sys.stdin:
        case = json.loads(line)
        if case["k"] == "skip":
            problem = None
        elif case["k"] == "q":
            problem = None
            for index, req in enumerate(case["reqs"]):
                problem = check_request(req)
                if problem:
                    problem = "request %d: %s" % (index, problem)
                    break
        else:
            problem = check_response(case)
        out.write("ok\n" if problem is None else "disagree " + problem.replace("\n", "\\n") + "\n")
    out.flush()


if __name__ == "__main__":
    main()
