#!/usr/bin/env bash
# A Connxt fleet on this machine: hosts are network namespaces on a bridge of the fleet's
# own (10.203.0.0/24), each running what a host of a real fleet runs, with the commands and
# settings of the Kubernetes manifests; only the addresses differ. Root only (`ip netns`).
#
#   fleet.sh up                  build the network, start every host, print the addresses
#   fleet.sh demo                `connxt demo` from the load host, through the balancer
#   fleet.sh down                remove every namespace, link, rule and process of a fleet,
#                                also of one that crashed (found by name, not by pid file)
#   fleet.sh status              hosts, links, cuts and the units running
#   fleet.sh link HOST up|down   take a host's link down (a vanished host: no FIN, no RST)
#   fleet.sh cut A B | heal [A B]   drop every packet between two hosts (nftables), or stop
#   fleet.sh stop HOST [UNIT] [SIGNAL]   SIGTERM (or SIGNAL) to a host's units, and wait
#   fleet.sh kill HOST           SIGKILL to every process in the host's namespace
#   fleet.sh start HOST [UNIT]   start a host's units (again)
#   fleet.sh wait HOST [UNIT]    wait until they are ready
#   fleet.sh exec HOST CMD ...   run CMD in the host's namespace with the fleet's settings
#                                (CONNXT_FLEET_CODE=DIR: start/exec run the release checked
#                                out in DIR, with its own .venv, instead of this one)
#   fleet.sh rabbitmqctl ARGS    the fleet's broker's rabbitmqctl (list_queues, list_channels)
#
# Topology, units and settings: README.md, "A fleet on one machine". State, logs and
# secrets live in CONNXT_FLEET_DIR (/tmp/connxt-fleet); CONNXT_FLEET_SETTINGS names a file
# of KEY=VALUE lines applied after the fleet's own settings (the tests' healing intervals).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${CONNXT_FLEET_DIR:-/tmp/connxt-fleet}
READY_SECONDS=${CONNXT_FLEET_READY_SECONDS:-120}

say() { echo "[fleet] $*"; }
die() {
    echo "[fleet] ERROR: $*" >&2
    exit 1
}

# shellcheck source=deploy/fleet/net.sh
source "$ROOT/deploy/fleet/net.sh"
# shellcheck source=deploy/fleet/units.sh
source "$ROOT/deploy/fleet/units.sh"
# shellcheck source=deploy/fleet/ready.sh
source "$ROOT/deploy/fleet/ready.sh"
# shellcheck source=deploy/fleet/settings.sh
source "$ROOT/deploy/fleet/settings.sh"

[ "$(id -u)" -eq 0 ] || die "the fleet needs root (network namespaces, veth, nftables)"

# --- tools --------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself"
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        </dev/null >/dev/null || die "apt-get install $* failed"
}

ensure_tools() {
    # PostgreSQL, Redis, RabbitMQ and Prometheus as `make test` installs them; the fleet runs
    # instances of its own and never uses the machine's.
    if [ -z "$(pg_bin)" ] || ! command -v redis-server >/dev/null ||
        [ ! -x "$RABBITMQ_SERVER" ] || ! command -v prometheus >/dev/null; then
        CONNXT_EXTRA_SERVICES="rabbitmq prometheus" bash "$ROOT/deploy/services.sh"
    fi
    local tool package
    for tool in haproxy:haproxy nft:nftables curl:curl ip:iproute2; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || apt_install "${tool#*:}"
    done
    CONNXT_SKIP_SERVICES=1 bash "$ROOT/deploy/bootstrap.sh" >/dev/null
}

# --- up -----------------------------------------------------------------------------------

fleet_exists() { [ -n "$(fleet_namespaces)" ]; }

up() {
    if fleet_exists; then
        die "a fleet is up already (owner: $(cat "$STATE/owner" 2>/dev/null || echo unknown)); \
make fleet-down (bash deploy/fleet/fleet.sh down) first"
    fi
    local began=$SECONDS
    ensure_tools
    rm -rf "$STATE"
    mkdir -p "$STATE/logs" "$STATE/run" "$STATE/db/redis" "$STATE/hosts"
    chmod 755 "$STATE"
    echo "${CONNXT_FLEET_OWNER:-make fleet}" >"$STATE/owner"
    trap 'on_failed_up' EXIT
    probe_flags
    write_settings
    net_up
    say "network: ${#FLEET_HOSTS[@]} hosts on $BRIDGE ($FLEET_SUBNET.0/24)"

    init_postgres
    init_rabbitmq
    start_host db
    wait_db
    run_in db postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -q \
        -c "create database connxt" || die "could not create the database"
    # deploy/k8s/migrate-job.yaml, once per release, before the new pods take traffic.
    say "connxt db upgrade && connxt catalog sync (the migrate job, from api1)"
    local settings=()
    mapfile -t settings <"$STATE/fleet.env"
    run_in api1 migrate "${settings[@]}" -- sh -c "connxt db upgrade && connxt catalog sync" ||
        die "the migrate job failed: $(log_of api1 migrate)"

    local host
    for host in internet "${API_HOSTS[@]}" "${WORKER_HOSTS[@]}" beat; do
        start_host "$host"
    done
    create_tenant
    for host in internet "${API_HOSTS[@]}" "${WORKER_HOSTS[@]}" beat; do
        wait_host "$host"
    done
    write_prometheus_config
    start_host lb
    start_host mon
    wait_host lb
    wait_host mon
    write_fleet_json
    trap - EXIT
    say "up in $((SECONDS - began))s"
    show_addresses
}

on_failed_up() {
    trap - EXIT
    echo "[fleet] ERROR: the fleet did not come up; logs in $STATE/logs; removing it" >&2
    keep_logs
    down_all
}

create_tenant() {
    local out
    out=$(connxt_on api1 tenants create --brand demo --environment fleet --json | tail -n 1)
    (umask 077 && echo "$out" >"$STATE/tenant.json")
    connxt_on api1 tenants notification-url --brand demo --environment fleet \
        --url "http://$(addr internet):$SANDBOX_PORT/merchant/notifications" >/dev/null
}

# --- demo, status, down -------------------------------------------------------------------

demo() {
    [ -f "$STATE/tenant.json" ] || die "no fleet is up (make fleet)"
    local token secret
    token=$("$FLEET_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' \
        "$STATE/tenant.json")
    secret=$("$FLEET_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["notificationSecret"])' \
        "$STATE/tenant.json")
    say "connxt demo from the load host ($(addr load)) through the balancer (http://$(addr lb))"
    unit_argv load demo CONNXT_DEMO_NOTIFICATION_SECRET="$secret" -- \
        connxt demo --api "http://$(addr lb)" --sandbox "http://$(addr internet):$SANDBOX_PORT" \
        --token "$token"
    "${UNIT_ARGV[@]}"
}

status() {
    fleet_exists || {
        say "no fleet"
        return 0
    }
    net_status
    local host unit pidfile state
    for host in "${FLEET_HOSTS[@]}"; do
        for unit in $(units_of "$host"); do
            pidfile=$(pid_of "$host" "$unit")
            state=stopped
            if [ "$host/$unit" = db/postgres ]; then
                [ -f "$STATE/db/pg/postmaster.pid" ] && state=running
            elif [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
                state="running (pid $(cat "$pidfile"))"
            fi
            printf '  %-9s %-13s %s\n' "$host" "$unit" "$state"
        done
    done
}

# Logs outlive a failed run: moved next to the state directory, which goes.
keep_logs() {
    [ -d "$STATE/logs" ] || return 0
    local kept
    kept="$STATE-logs-$(date +%Y%m%d-%H%M%S)"
    mv "$STATE/logs" "$kept" && echo "[fleet] logs kept in $kept" >&2
}

# PostgreSQL's shared memory outlives a postmaster killed with SIGKILL: its servers get
# SIGQUIT first (an immediate shutdown, which removes it), and whatever segment a killed
# one left anyway is removed after (found by the pid that made it).
stop_fleet_postgres() {
    local pids pid deadline=$((SECONDS + 10))
    pids=$(for pid in $(ip netns pids "$(netns db)" 2>/dev/null); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then echo "$pid"; fi
    done)
    [ -n "$pids" ] || return 0
    echo "$pids" >"${TMPDIR:-/tmp}/connxt-fleet-pg-pids.$$"
    # shellcheck disable=SC2086
    kill -QUIT $pids 2>/dev/null || true
    for pid in $pids; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    done
}

remove_orphaned_shm() {
    local list=${TMPDIR:-/tmp}/connxt-fleet-pg-pids.$$ id cpid
    [ -f "$list" ] || return 0
    ipcs -m -p 2>/dev/null | awk 'NR > 3 && $1 ~ /^[0-9]+$/ {print $1, $3}' |
        while read -r id cpid; do
            if grep -qx "$cpid" "$list" && ipcs -m -i "$id" 2>/dev/null | grep -q 'nattch=0'; then
                ipcrm -m "$id" 2>/dev/null || true
            fi
        done
    rm -f "$list"
}

down_all() {
    local ns host pid
    [ -d "$STATE/db/pg" ] && fleet_exists && stop_postgres immediate
    stop_fleet_postgres
    for ns in $(fleet_namespaces); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            [ "$pid" = "$$" ] || kill -KILL "$pid" 2>/dev/null || true
        done
    done
    # Whatever still carries the fleet's mark, in a namespace already gone or in none.
    for pid in $(grep -lsz '^CONNXT_FLEET_HOST=' /proc/[0-9]*/environ | cut -d/ -f3); do
        [ "$pid" = "$$" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 15))
    for ns in $(fleet_namespaces); do
        while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
    done
    net_down
    remove_orphaned_shm
    rm -rf "$STATE"
}

down() {
    [ "${CONNXT_FLEET_KEEP_LOGS:-}" = 1 ] && keep_logs
    down_all
    local left
    left=$(
        fleet_namespaces
        ip -o link show | awk -F': ' '{print $2}' | grep "^$FLEET_PREFIX-" || true
        nft list tables 2>/dev/null | grep " $FLEET_PREFIX-" || true
    )
    [ -z "$left" ] || die "left behind: $left"
    say "down: no connxt-* namespace, link, nftables table or process left"
}

# --- dispatch -----------------------------------------------------------------------------

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
link | cut | heal | stop | kill | start | wait | exec | rabbitmqctl)
    fleet_exists && [ -f "$STATE/fleet.env" ] || die "no fleet is up (make fleet)"
    ;;
esac
case "$command" in
up) up ;;
demo) demo ;;
down) down ;;
status) status ;;
link) link_set "${1:?host}" "${2:?up or down}" ;;
cut) cut_path "${1:?host}" "${2:?host}" ;;
heal) heal_path "$@" ;;
stop)
    known_host "${1:?host}"
    if [ -n "${2:-}" ]; then
        stop_unit "$1" "$2" "${3:-TERM}"
    else
        for unit in $(units_of "$1"); do stop_unit "$1" "$unit" TERM & done
        wait
    fi
    ;;
kill) known_host "${1:?host}" && kill_host "$1" KILL ;;
start)
    known_host "${1:?host}"
    if [ -n "${2:-}" ]; then start_unit "$1" "$2"; else start_host "$1"; fi
    wait_host "$1" "${2:-}"
    # Another release on an api host may serve its metrics elsewhere: Prometheus follows.
    case "$1" in api*) [ -d "$STATE/prometheus/targets" ] && write_prometheus_config ;; esac
    ;;
wait) known_host "${1:?host}" && wait_host "$1" "${2:-}" ;;
exec)
    known_host "${1:?host}"
    host=$1
    shift
    mapfile -t settings <"$STATE/fleet.env"
    unit_argv "$host" exec "${settings[@]}" -- "$@"
    "${UNIT_ARGV[@]}"
    ;;
rabbitmqctl)
    # shellcheck disable=SC2046
    unit_argv db rabbitmqctl $(rabbitmq_env) -- "${RABBITMQ_SERVER%/*}/rabbitmqctl" \
        -n connxt@localhost "$@"
    "${UNIT_ARGV[@]}"
    ;;
*) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' && exit 2 ;;
esac
