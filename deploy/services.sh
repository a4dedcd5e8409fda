#!/usr/bin/env bash
# Make sure PostgreSQL and Redis are installed, running and ready on loopback, and that the
# Connxt database exists. Idempotent: when both already answer it only checks the database.
# RabbitMQ (the fleet broker) too when CONNXT_BROKER_URL is amqp://... or
# CONNXT_EXTRA_SERVICES names "rabbitmq"; "prometheus" there installs Prometheus and
# promtool (not started: the tests run their own). deploy/test.sh asks for both.
#
#   bash deploy/services.sh [DBNAME ...]
#
# The default database is $CONNXT_DB_NAME, else the one named in $CONNXT_DATABASE_URL, else
# "connxt".
#
# Installs with apt-get (Debian/Ubuntu) when a server is missing; starts PostgreSQL with
# pg_ctlcluster and Redis with redis-server --daemonize when they are not running. Both are
# expected on loopback: PostgreSQL 127.0.0.1:5432 (user postgres, trust auth) and Redis
# 127.0.0.1:6379; CONNXT_PG_PORT and CONNXT_REDIS_PORT pick other ports.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=${CONNXT_PG_PORT:-5432}
PG_USER=postgres
REDIS_HOST=127.0.0.1
REDIS_PORT=${CONNXT_REDIS_PORT:-6379}
RABBITMQ_PORT=${CONNXT_RABBITMQ_PORT:-5672}
EXTRA_SERVICES=" ${CONNXT_EXTRA_SERVICES:-} "
case "${CONNXT_BROKER_URL:-}" in amqp://* | amqps://* | pyamqp://*) EXTRA_SERVICES+=" rabbitmq " ;; esac
READY_TIMEOUT=${CONNXT_SERVICES_TIMEOUT:-60}

if [ $# -gt 0 ]; then
    DB_NAMES=("$@")
else
    url_db=${CONNXT_DATABASE_URL:-}
    url_db=${url_db##*/}
    url_db=${url_db%%\?*}
    [[ "$url_db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || url_db=
    DB_NAMES=("${CONNXT_DB_NAME:-${url_db:-connxt}}")
fi

say() { echo "[services] $*"; }
die() {
    echo "[services] ERROR: $*" >&2
    exit 1
}

# Root runs privileged steps directly; anyone else goes through sudo when there is one.
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    SUDO=()
fi
as_root() { ${SUDO[@]+"${SUDO[@]}"} "$@"; }
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install $* yourself (PostgreSQL 15+ and Redis 6+ on loopback)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        </dev/null || die "apt-get install $* failed"
}

# Wait until "$@" succeeds, at most READY_TIMEOUT seconds.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + READY_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
    say "$what ready"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }
redis_ready() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
pg_sql() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -w -X -q -v ON_ERROR_STOP=1 "$@"; }

# --- PostgreSQL ---------------------------------------------------------------------------

latest_pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1; }

pg_server_installed() {
    local v
    v=$(latest_pg_version)
    [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && command -v pg_ctlcluster >/dev/null 2>&1
}

# "version name" of the cluster on PG_PORT (else the first one); empty when there is none.
pg_cluster() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    local clusters
    clusters=$(pg_lsclusters -h 2>/dev/null || true)
    [ -n "$clusters" ] || return 0
    echo "$clusters" | awk -v port="$PG_PORT" '$3 == port {print $1, $2; found=1; exit}
        END {if (!found) exit 1}' ||
        echo "$clusters" | awk 'NR == 1 {print $1, $2}'
}

# Trust for local sockets and loopback TCP, placed first so it wins over Debian's defaults.
pg_trust_loopback() {
    local version=$1 name=$2
    local hba="/etc/postgresql/$version/$name/pg_hba.conf"
    [ -f "$hba" ] || die "no $hba"
    if ! grep -q '^# connxt: trust on loopback' "$hba"; then
        say "setting trust auth for local and loopback connections in $hba"
        local tmp
        tmp=$(mktemp)
        {
            echo "# connxt: trust on loopback (development machine)"
            echo "local   all   all                 trust"
            echo "host    all   all   127.0.0.1/32  trust"
            echo "host    all   all   ::1/128       trust"
            cat "$hba"
        } >"$tmp"
        as_root cp "$tmp" "$hba"
        rm -f "$tmp"
        as_root chown postgres:postgres "$hba" 2>/dev/null || true
        return 0
    fi
    return 1
}

ensure_postgres() {
    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        pg_server_installed || apt_install postgresql
        command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
    fi
    pg_ready && return 0

    say "PostgreSQL is not answering on $PG_HOST:$PG_PORT"
    pg_server_installed || apt_install postgresql
    pg_server_installed || die "PostgreSQL server binaries still missing after install"

    local cluster version name
    cluster=$(pg_cluster)
    if [ -z "$cluster" ]; then
        version=$(latest_pg_version)
        say "creating cluster $version/main"
        as_root pg_createcluster "$version" main ||
            die "pg_createcluster $version main failed"
        cluster="$version main"
    fi
    read -r version name <<<"$cluster"
    pg_trust_loopback "$version" "$name" || true

    # The socket directory lives on a tmpfs on many machines and vanishes on reboot.
    as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql 2>/dev/null || true

    say "starting PostgreSQL cluster $version/$name"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
        pg_ready || die "could not start PostgreSQL $version/$name (see /var/log/postgresql/)"
    wait_for "PostgreSQL" pg_ready ||
        die "PostgreSQL did not become ready on $PG_HOST:$PG_PORT within ${READY_TIMEOUT}s"
}

# A running server that still asks for a password: switch loopback to trust and reload.
ensure_postgres_login() {
    pg_sql -d postgres -tAc 'select 1' >/dev/null 2>&1 && return 0
    local cluster version name
    cluster=$(pg_cluster)
    [ -n "$cluster" ] ||
        die "cannot log in to PostgreSQL on $PG_HOST:$PG_PORT as $PG_USER (no local cluster to fix)"
    read -r version name <<<"$cluster"
    if pg_trust_loopback "$version" "$name"; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload ||
            die "could not reload PostgreSQL $version/$name"
        sleep 0.5
    fi
    pg_sql -d postgres -tAc 'select 1' >/dev/null ||
        die "cannot log in to PostgreSQL on $PG_HOST:$PG_PORT as $PG_USER without a password"
}

# The test suite runs several stacks side by side (deploy/test.sh), each with its own pools:
# CONNXT_PG_MIN_CONNECTIONS asks for that many connections at least (the default is 100).
# Raising it takes a restart, done here, before anything of ours is connected.
ensure_postgres_capacity() {
    local wanted=$1 have cluster version name
    have=$(pg_sql -d postgres -tAc 'show max_connections') || return 0
    [ "$have" -ge "$wanted" ] && return 0
    cluster=$(pg_cluster)
    if [ -z "$cluster" ]; then
        say "WARNING: PostgreSQL allows $have connections, not $wanted, and is not a local cluster to change"
        return 0
    fi
    read -r version name <<<"$cluster"
    say "raising PostgreSQL's max_connections from $have to $wanted (a restart)"
    pg_sql -d postgres -c "alter system set max_connections = $wanted" >/dev/null
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" restart ||
        die "could not restart PostgreSQL $version/$name"
    wait_for "PostgreSQL" pg_ready || die "PostgreSQL did not come back after its restart"
}

ensure_database() {
    local db=$1
    [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid database name: $db"
    local exists
    exists=$(pg_sql -d postgres -tAc "select 1 from pg_database where datname = '$db'") ||
        die "could not query PostgreSQL for database $db"
    [ "$exists" = 1 ] && return 0
    say "creating database $db"
    # Two set-ups racing each other: the loser's CREATE fails, the database exists anyway.
    pg_sql -d postgres -c "create database \"$db\"" >/dev/null 2>&1 ||
        [ "$(pg_sql -d postgres -tAc "select 1 from pg_database where datname = '$db'")" = 1 ] ||
        die "could not create database $db"
}

# --- Redis --------------------------------------------------------------------------------

ensure_redis() {
    if ! command -v redis-cli >/dev/null 2>&1; then
        command -v redis-server >/dev/null 2>&1 || apt_install redis-server
        command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
    fi
    redis_ready && return 0

    say "Redis is not answering on $REDIS_HOST:$REDIS_PORT"
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install"
    as_root mkdir -p /var/lib/redis /var/log/redis
    say "starting redis-server"
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
        redis_ready || die "could not start redis-server (see /var/log/redis/ci.log)"
    wait_for "Redis" redis_ready ||
        die "Redis did not become ready on $REDIS_HOST:$REDIS_PORT within ${READY_TIMEOUT}s"
}

# --- RabbitMQ (fleet broker) and Prometheus (metrics tests) -------------------------------

rabbitmq_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$RABBITMQ_PORT") 2>/dev/null; }

ensure_rabbitmq() {
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    if ! rabbitmq_ready; then
        say "RabbitMQ is not answering on 127.0.0.1:$RABBITMQ_PORT; starting rabbitmq-server"
        as_root install -d -o rabbitmq -g rabbitmq /var/run/rabbitmq 2>/dev/null || true
        as_root rabbitmq-server -detached || rabbitmq_ready ||
            die "could not start rabbitmq-server (see /var/log/rabbitmq/)"
    fi
    # Listening is not ready: wait until the node has booted its applications.
    wait_for "RabbitMQ" as_root timeout 10 rabbitmqctl -q await_startup ||
        die "RabbitMQ did not become ready on 127.0.0.1:$RABBITMQ_PORT within ${READY_TIMEOUT}s"
}

ensure_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        apt_install prometheus
    fi
}

ensure_postgres
ensure_postgres_login
[ -n "${CONNXT_PG_MIN_CONNECTIONS:-}" ] && ensure_postgres_capacity "$CONNXT_PG_MIN_CONNECTIONS"
ensure_redis
case "$EXTRA_SERVICES" in *" rabbitmq "*) ensure_rabbitmq ;; esac
case "$EXTRA_SERVICES" in *" prometheus "*) ensure_prometheus ;; esac
for db in "${DB_NAMES[@]}"; do
    ensure_database "$db"
done
