#!/usr/bin/env bash
# Make sure Debian's Chromium and ChromeDriver are installed for the console's browser tests
# (tests/console). Idempotent: when both answer it does nothing.
#
#   bash deploy/browsers.sh
#
# Installs the packages `chromium` and `chromium-driver` with apt-get, non-interactively.
# A test tool's own browser download cannot be used: the machines reach package registries
# only. CONNXT_CHROMIUM and CONNXT_CHROMEDRIVER name other binaries (then nothing is
# installed).
set -euo pipefail

CHROMIUM=${CONNXT_CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CONNXT_CHROMEDRIVER:-/usr/bin/chromedriver}

say() { echo "[browsers] $*"; }
die() {
    echo "[browsers] ERROR: $*" >&2
    exit 1
}

answers() { "$1" --version >/dev/null 2>&1; }

if answers "$CHROMIUM" && answers "$CHROMEDRIVER"; then
    exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install Chromium and ChromeDriver, then set CONNXT_CHROMIUM and CONNXT_CHROMEDRIVER"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    die "not root and no sudo: install the packages chromium and chromium-driver"
fi
as_root() { ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive "$@" </dev/null; }

# Other set-ups on this machine may hold dpkg's lock for a while: wait for it, do not fail.
APT=(apt-get -q -y -o DPkg::Lock::Timeout=600 --no-install-recommends)
say "apt-get install chromium chromium-driver"
if ! as_root "${APT[@]}" install chromium chromium-driver; then
    say "apt-get update, then again"
    as_root apt-get -q -o DPkg::Lock::Timeout=600 update || die "apt-get update failed"
    as_root "${APT[@]}" install chromium chromium-driver || die "could not install chromium"
fi
answers "$CHROMIUM" || die "$CHROMIUM does not run after the install"
answers "$CHROMEDRIVER" || die "$CHROMEDRIVER does not run after the install"
say "$("$CHROMIUM" --version 2>/dev/null | head -n 1); $("$CHROMEDRIVER" --version | head -n 1)"
