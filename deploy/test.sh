#!/usr/bin/env bash
# The test suite, with the same set-up as `make run`: .venv, PostgreSQL, Redis; and what
# only the tests need: RabbitMQ (the fleet broker's tests) and Prometheus (the metrics test).
#
#   bash deploy/test.sh [pytest args ...]      e.g. bash deploy/test.sh tests/unit -x
#
# Without a path among the arguments the whole tests/ tree runs. Exits with pytest's code,
# except that "no tests collected" (5) is a failure too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS=0

CONNXT_EXTRA_SERVICES="${CONNXT_EXTRA_SERVICES:-} rabbitmq prometheus" bash deploy/bootstrap.sh

has_path=0
for arg in "$@"; do
    case "$arg" in
    -*) ;;
    *) [ -e "${arg%%::*}" ] && has_path=1 ;;
    esac
done
targets=()
[ "$has_path" -eq 1 ] || targets=(tests)

export PYTHONUNBUFFERED=1
echo "[test] .venv/bin/python -m pytest -p no:cacheprovider ${targets[*]} $*"
set +e
.venv/bin/python -m pytest -p no:cacheprovider ${targets[@]+"${targets[@]}"} "$@" </dev/null
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "[test] FAILED: pytest collected no tests" >&2
    rc=1
fi
echo "[test] exit code $rc, elapsed ${SECONDS}s"
exit "$rc"
