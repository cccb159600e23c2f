#!/usr/bin/env bash
# The README's test command: installs what the tests need, when it is missing, and runs
# `swift test` with any arguments given (`scripts/test.sh --filter OpenAPI`); without arguments,
# the whole suite and then a short libFuzzer run (fuzz/run.sh 20000).
#
# What the tests use besides Swift:
# - Debian packages (apt-get, after apt-get update, only the missing ones): promtool (prometheus)
#   and Python's prometheus_client parser (python3-prometheus-client, run with /usr/bin/python3)
#   check /metrics; the state store (GRDB) links the system SQLite (libsqlite3-dev); the HTTPS
#   tests make certificates with openssl and talk to Teal with curl; the HTTP/2 tests use nghttp
#   and h2load (nghttp2-client); the PostgreSQL store tests start throwaway clusters with initdb
#   and pg_ctl of PostgreSQL 15 (postgresql; the cluster the package starts is not used);
#   python3-venv makes the virtualenv below.
# - PyPI, pinned, in a virtualenv at .build/test-venv: schemathesis, which SchemathesisTests runs
#   against a live `teal serve`, and h11, the strict HTTP/1.1 parser DifferentialFramingTests
#   checks the proxy's forwarded bytes with. The tests find them there, or at TEAL_SCHEMATHESIS
#   and TEAL_H11_PYTHON, which this script sets.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(prometheus python3-prometheus-client libsqlite3-dev openssl curl python3-venv nghttp2-client postgresql)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

schemathesis_version=4.32.5
h11_version=0.16.0
venv=.build/test-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$schemathesis_version" \
    || [ "$("$venv/bin/python" -c 'import h11; print(h11.__version__)' 2>/dev/null)" != "$h11_version" ]; then
    echo "installing schemathesis $schemathesis_version and h11 $h11_version into $venv" >&2
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version" "h11==$h11_version"
fi
TEAL_SCHEMATHESIS="$(pwd)/$venv/bin/schemathesis"
TEAL_H11_PYTHON="$(pwd)/$venv/bin/python"
export TEAL_SCHEMATHESIS TEAL_H11_PYTHON

if (($#)); then
    exec swift test "$@"
fi
# The whole suite runs in two passes: first everything but the tests that load the machine on
# purpose (thousands of connections, fuzzers, schemathesis, PostgreSQL clusters), in parallel;
# then those, by themselves. Together they made timing checks of other tests fail (a 504 that
# must come within a bound, a verdict that needs enough requests in a 1 s hold).
heavy='SchemathesisTests|AdminRobustnessTests|OutsideNumbersTests|PostgresStateStoreTests|PostgresServeTests|DifferentialFramingTests'
swift test --skip "$heavy"
swift test --skip-build --filter "$heavy"
# Last, a short bounded run of the coverage-guided fuzzer over the HTTP/1.1 parsers and the
# chunked re-framer (fuzz/run.sh; HARDENING.md has the long runs).
MAX_TOTAL_TIME=300 exec fuzz/run.sh 20000
