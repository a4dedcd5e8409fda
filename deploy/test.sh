#!/usr/bin/env bash
# The test suite, with the same set-up as `make run`: .venv, PostgreSQL, Redis; and what
# only the tests need: RabbitMQ (the fleet broker's tests) and Prometheus (the metrics test).
#
#   bash deploy/test.sh [pytest args ...]      e.g. bash deploy/test.sh tests/unit -x
#
# Without a path among the arguments the whole tests/ tree runs. Exits with pytest's code,
# except that "no tests collected" (5) is a failure too.
#
# Two phases: every test but the chaos tests on CONNXT_TEST_WORKERS pytest-xdist
# processes side by side (3 by default; each has a database, a Redis prefix, a RabbitMQ
# vhost, ports and a stack of its own: tests.support.testenv), whole files to a process,
# the slow tiers' first (tests/conftest.py); then the chaos tests, three at a time. Each
# chaos test builds a world of its own (its PostgreSQL, Redis and RabbitMQ on spare ports:
# tests/chaos/world.py), so one that kills or restarts a server touches no other; they
# spend half their time waiting for the healing they time, and their bounds (a refusal
# within 10 s, no answer slower than 12 s) hold with three worlds on two cores.
# CONNXT_TEST_WORKERS=1, or `-n` among the arguments, runs everything as given.
# The fleet tests (tests/fleet, `-m fleet`) take the machine's fleet namespaces: alone too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS=0

CONNXT_EXTRA_SERVICES="${CONNXT_EXTRA_SERVICES:-} rabbitmq prometheus" \
    CONNXT_PG_MIN_CONNECTIONS=${CONNXT_PG_MIN_CONNECTIONS:-300} bash deploy/bootstrap.sh

has_path=0
marks=""
parallel=${CONNXT_TEST_WORKERS:-3}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    -m)
        marks=$2
        shift 2
        continue
        ;;
    -m*) marks=${1#-m} ;;
    -n | -n* | --numprocesses*) parallel=1 ;;
    -*) ;;
    *) [ -e "${1%%::*}" ] && has_path=1 ;;
    esac
    case "$1" in -m*) ;; *) args+=("$1") ;; esac
    shift
done
targets=()
[ "$has_path" -eq 1 ] || targets=(tests)
case "$marks" in *fleet*) parallel=1 ;; esac

export PYTHONUNBUFFERED=1
# Bytecode is cached for the run, whatever the environment says: every process of it (the
# pytest processes, each stack's API, worker, beat and sandbox, the commands the tests run)
# would otherwise compile the same sources again; collecting the tree takes 5 s instead of
# 10 s with it, in each of the nine pytest processes of a run.
unset PYTHONDONTWRITEBYTECODE
run_pytest() {
    echo "[test] .venv/bin/python -m pytest -p no:cacheprovider $*"
    set +e
    .venv/bin/python -m pytest -p no:cacheprovider "$@" </dev/null
    local rc=$?
    set -e
    return $rc
}
both() { # the user's marker expression and ours
    if [ -n "$marks" ]; then echo "($marks) and $1"; else echo "$1"; fi
}

rc=0
if [ "$parallel" -gt 1 ]; then
    codes=()
    phase() { # a marker expression, then pytest's own options
        local expression=$1 code=0
        shift
        run_pytest ${targets[@]+"${targets[@]}"} ${args[@]+"${args[@]}"} \
            -m "$(both "$expression")" "$@" || code=$?
        codes+=("$code")
    }
    phase "not chaos" -n "$parallel" --dist loadfile --no-loadscope-reorder
    # The chaos tests all live in tests/chaos: with no path given, each xdist process
    # collects those ten instead of the whole tree (seconds apiece on a busy host). An
    # expression that leaves them out ("broker and not chaos") skips the phase.
    [ "${targets[*]-}" = tests ] && targets=(tests/chaos)
    case "$marks" in *"not chaos"*) ;; *) phase "chaos" -n 3 --dist load ;; esac
    # "No tests" in one phase is fine when another ran some; in all of them it is a failure.
    rc=5
    for code in "${codes[@]}"; do
        case "$code" in
        5) ;;
        0) [ "$rc" -eq 5 ] && rc=0 ;;
        *) rc=$code ;;
        esac
    done
else
    mark_args=()
    [ -n "$marks" ] && mark_args=(-m "$marks")
    run_pytest ${targets[@]+"${targets[@]}"} ${args[@]+"${args[@]}"} ${mark_args[@]+"${mark_args[@]}"} ||
        rc=$?
fi

if [ "$rc" -eq 5 ]; then
    echo "[test] FAILED: pytest collected no tests" >&2
    rc=1
fi
echo "[test] exit code $rc, elapsed ${SECONDS}s"
exit "$rc"
