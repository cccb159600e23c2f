#!/usr/bin/env bash
# The release step of a pipeline: hands a freshly deployed green version to Teal and waits for
# the outcome. Exit 0: promoted. Exit 1: rolled back or aborted (the route's journal is printed).
# Exit 2: Teal could not be asked (wrong address or token, unknown route, a release already
# running) or it did not finish within RELEASE_TIMEOUT.
#
# Environment:
#   TEAL_ADMIN         admin API address, e.g. http://teal.internal:9901 (required)
#   TEAL_ADMIN_TOKEN   bearer token, when the admin API has one
#   ROUTE              the route to release on (required)
#   GREEN_VERSION      the version being released, e.g. the build number (required)
#   GREEN_INSTANCES    space-separated host:port of the green instances; empty: the route
#                      file's green pool (for example a DNS pool that follows a Kubernetes Service)
#   STEPS              plan, e.g. 6/0,6/1,2/4,0/6 (default: the route file's)
#   HOLD               hold per step, e.g. 30s (default: the route file's)
#   RELEASE_TIMEOUT    seconds to wait for the outcome (default 3600)
#   TEAL               the teal command (default: teal on PATH)
set -uo pipefail

TEAL=${TEAL:-teal}
: "${TEAL_ADMIN:?set TEAL_ADMIN to the admin API address}"
: "${ROUTE:?set ROUTE to the route to release on}"
: "${GREEN_VERSION:?set GREEN_VERSION to the version being released}"
export TEAL_ADMIN TEAL_ADMIN_TOKEN="${TEAL_ADMIN_TOKEN:-}"

start=(rollout start "$ROUTE" --green-version "$GREEN_VERSION")
for instance in ${GREEN_INSTANCES:-}; do start+=(--green-instance "$instance"); done
[[ -n ${STEPS:-} ]] && start+=(--steps "$STEPS")
[[ -n ${HOLD:-} ]] && start+=(--hold "$HOLD")

echo "release: $ROUTE → $GREEN_VERSION"
"$TEAL" "${start[@]}" || { echo "release: Teal refused to start the release" >&2; exit 2; }

"$TEAL" rollout wait "$ROUTE" --timeout "${RELEASE_TIMEOUT:-3600}"
outcome=$?
case $outcome in
  0) echo "release: $GREEN_VERSION promoted on $ROUTE" ;;
  1)
    echo "release: $GREEN_VERSION was NOT promoted on $ROUTE; what happened:" >&2
    "$TEAL" events "$ROUTE" >&2
    ;;
  *) echo "release: no outcome from Teal (exit $outcome)" >&2 ;;
esac
exit "$outcome"
