#!/usr/bin/env bash
# Set up this checkout for running and testing: a virtualenv in .venv with the project
# installed in editable mode (with the test, ops and otel extras), then PostgreSQL and Redis through
# deploy/services.sh.
#
#   bash deploy/bootstrap.sh          CONNXT_SKIP_SERVICES=1 skips the services step
#
# The install is skipped when neither pyproject.toml nor the set of top-level packages has
# changed since the last one (stamp file .venv/.installed-<sha256 of pyproject.toml>).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { echo "[bootstrap] $*"; }
die() {
    echo "[bootstrap] ERROR: $*" >&2
    exit 1
}

# Two set-ups of the same checkout at once (make run next to make test) take turns.
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/connxt-bootstrap-$(printf '%s' "$ROOT" | sha256sum | cut -c1-16).lock"
    exec 9>"$lock"
    flock 9
fi

python_ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

pick_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

VENV=.venv
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    PY=$(pick_python) || die "Python 3.11+ with the venv module not found (set PYTHON=/path/to/python3.11)"
    [ -d "$VENV" ] && say "removing broken $VENV" && rm -rf "$VENV"
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    if ! "$PY" -m venv "$VENV"; then
        rm -rf "$VENV"
        # Debian's own python3 ships venv's ensurepip separately.
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv </dev/null ||
                die "could not install python3-venv"
            "$PY" -m venv "$VENV" || die "could not create $VENV"
        else
            die "could not create $VENV with $PY"
        fi
    fi
fi

# What the editable install depends on: pyproject.toml, and the top-level packages present
# (a flat-layout editable install only maps the packages that existed when it ran).
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp="$VENV/.installed-$hash"
packages=$(find . -mindepth 2 -maxdepth 2 -name __init__.py -not -path './.*' | sort)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then
    say "dependencies up to date"
else
    say "installing the project and its test dependencies into $VENV"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
    "$VENV/bin/python" -m pip install -q --upgrade pip </dev/null || die "could not upgrade pip"
    "$VENV/bin/python" -m pip install -q -e '.[test,ops,otel]' </dev/null ||
        die "pip install -e '.[test,ops,otel]' failed"
    rm -f "$VENV"/.installed-*
    printf '%s' "$packages" >"$stamp"
fi

if [ "${CONNXT_SKIP_SERVICES:-0}" = 1 ]; then
    say "CONNXT_SKIP_SERVICES=1: not checking PostgreSQL and Redis"
else
    # Without the lock's descriptor: a server started (or restarted) here inherits what it
    # is given, and one holding the lock would keep every later set-up waiting for good.
    bash "$ROOT/deploy/services.sh" 9>&-
fi
