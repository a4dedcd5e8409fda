# The fleet's processes, sourced by deploy/fleet/fleet.sh. A unit is one process on one
# host (db: postgres, redis, rabbitmq; lb: haproxy; apiN: api; workerN: one per lane;
# beat: beat; internet: sandbox; mon: prometheus), started in the host's namespace in a
# session of its own, so that it outlives the script that started it.
#
# Every process carries CONNXT_FLEET_HOST in its environment: together with the namespaces
# it is how `fleet.sh down` finds whatever is left of a fleet, pid files or not.

# The release the Connxt processes run: this checkout, or CONNXT_FLEET_CODE (another
# checkout with its own .venv, e.g. the previous release's tag for a rolling upgrade).
CODE=$(cd "${CONNXT_FLEET_CODE:-$ROOT}" && pwd)
VENV_BIN=$CODE/.venv/bin
FLEET_PYTHON=$ROOT/.venv/bin/python # the fleet's own helpers (plan.py configmap, JSON)
RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server # the broker itself, not Debian's su wrapper
API_PORT=8000
API_METRICS_PORT=9100 # where `connxt api --metrics-port` serves, when it has the option
SANDBOX_PORT=8100
BEAT_METRICS_PORT=9102
WORKER_METRICS_BASE=9110 # + the lane's index
LB_PORT=80
LB_STATS_PORT=8404
PROMETHEUS_PORT=9090
PG_PORT=5432
REDIS_PORT=6379
AMQP_PORT=5672
RABBITMQ_DIST_PORT=25672
RABBITMQ_EPMD_PORT=4370 # the epmd the node starts, on a port of its own as its others

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# A host's units, in start order.
units_of() {
    case "$1" in
    db) echo postgres redis rabbitmq ;;
    lb) echo haproxy ;;
    api*) echo api ;;
    worker*) awk '{print $1}' "$STATE/lanes" ;;
    beat) echo beat ;;
    internet) echo sandbox ;;
    mon) echo prometheus ;;
    load) ;;
    esac
}

log_of() { echo "$STATE/logs/$1.$2.log"; }
pid_of() { echo "$STATE/run/$1.$2.pid"; }

# The option is passed only when the release run has it: what each release's `connxt`
# offers is asked once (its --help) and kept. [CODE_DIR]: another release's checkout than
# the one this run starts (the one a host runs, code_of).
flags_file() { echo "$STATE/flags.$(echo "${1:-$CODE}" | md5sum | cut -c1-12)"; }

probe_flags() {
    local code=${1:-$CODE} file command flag
    file=$(flags_file "$code")
    [ -f "$file" ] && return 0
    : >"$file.tmp"
    for command in api worker beat; do
        for flag in --metrics-port --metrics-host; do
            if "$code/.venv/bin/connxt" "$command" --help 2>/dev/null | grep -q -- "$flag"; then
                echo "$command $flag" >>"$file.tmp"
            fi
        done
    done
    # A beat that keeps no schedule file (this release's) needs no --schedule; v0.1.0's dies
    # without one outside a checkout that ran `make run`.
    if "$code/.venv/bin/connxt" beat --help 2>/dev/null | tr -s ' \n' ' ' |
        grep -q "nothing depends on it"; then
        echo "beat no-schedule" >>"$file.tmp"
    fi
    mv "$file.tmp" "$file"
}

# has_flag "COMMAND --flag" [CODE_DIR]
has_flag() {
    probe_flags "${2:-}"
    grep -qx -- "$1" "$(flags_file "${2:-}")"
}

# The checkout a host's Connxt processes were last started from (during a rolling upgrade
# hosts run different releases, and each serves its metrics where its release does).
code_of() { cat "$STATE/run/$1.code" 2>/dev/null || echo "$CODE"; }

# unit_argv HOST UNIT [VAR=value ...] -- argv: UNIT_ARGV becomes the command that runs argv
# in the host's namespace, in a session of its own, with a clean environment (a
# container's, not the caller's: a test run's CONNXT_* never leaks in).
unit_argv() {
    local host=$1 unit=$2
    shift 2
    local vars=()
    while [ "$1" != "--" ]; do
        vars+=("$1")
        shift
    done
    shift
    # A unit's scratch space (its TMPDIR: a worker's metric files) is the fleet's: it goes
    # with `down`, also after a kill -9 that left no process to clean it up.
    local scratch=$STATE/hosts/$host/tmp/$unit
    rm -rf "$scratch"
    mkdir -p "$scratch"
    UNIT_ARGV=(ip netns exec "$(netns "$host")" env -i
        PATH="$VENV_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        LANG=C.UTF-8 HOME=/root PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
        TMPDIR="$scratch"
        CONNXT_FLEET_HOST="$host" CONNXT_FLEET_UNIT="$unit"
        ${vars[@]+"${vars[@]}"} setsid "$@")
}

# In the foreground, output to the unit's log, from the host's own directory.
run_in() {
    unit_argv "$@"
    (cd "$STATE/hosts/$1" && "${UNIT_ARGV[@]}" </dev/null >>"$(log_of "$1" "$2")" 2>&1)
}

# In the background: the unit's pid (its session's) goes to its pid file. The subshell is
# not a process group leader (no job control here), so setsid needs no fork: the
# subshell's pid becomes the unit's own, through every exec on the way.
spawn() {
    unit_argv "$@"
    stat -c %s "$(log_of "$1" "$2")" >"$STATE/run/$1.$2.since" 2>/dev/null || echo 0 >"$STATE/run/$1.$2.since"
    (cd "$STATE/hosts/$1" && exec "${UNIT_ARGV[@]}" </dev/null >>"$(log_of "$1" "$2")" 2>&1) &
    echo $! >"$(pid_of "$1" "$2")"
    disown $!
}

# The project's processes, with the fleet's settings (fleet.env) before their own.
spawn_connxt() {
    local host=$1 unit=$2
    shift 2
    local settings=()
    mapfile -t settings <"$STATE/fleet.env"
    spawn "$host" "$unit" "${settings[@]}" "$@"
}

metrics_host_args() {
    has_flag "$1 --metrics-host" && echo "--metrics-host $(addr "$2")"
}

start_unit() {
    local host=$1 unit=$2
    case "$host" in api* | worker* | beat) echo "$CODE" >"$STATE/run/$host.code" ;; esac
    case "$host/$unit" in
    db/postgres) start_postgres ;;
    db/redis)
        spawn db redis -- redis-server --bind 0.0.0.0 --port "$REDIS_PORT" --protected-mode no \
            --save "" --appendonly no --dir "$STATE/db/redis"
        ;;
    db/rabbitmq) start_rabbitmq ;;
    lb/haproxy)
        spawn lb haproxy \
            CONNXT_LB_PORT="$LB_PORT" CONNXT_LB_STATS_PORT="$LB_STATS_PORT" \
            CONNXT_API1_ADDR="$(addr api1):$API_PORT" CONNXT_API2_ADDR="$(addr api2):$API_PORT" \
            -- haproxy -W -db -f "$ROOT/deploy/haproxy/haproxy.cfg"
        ;;
    api*/api)
        local metrics=()
        if has_flag "api --metrics-port"; then
            metrics=(--metrics-port "$API_METRICS_PORT")
            has_flag "api --metrics-host" && metrics+=(--metrics-host "$(addr "$host")")
        fi
        # deploy/k8s/api.yaml: ["api", "--host", "0.0.0.0", "--port", "8000"]
        spawn_connxt "$host" api -- connxt api --host 0.0.0.0 --port "$API_PORT" \
            ${metrics[@]+"${metrics[@]}"}
        ;;
    worker*/*) start_lane "$host" "$unit" ;;
    beat/beat)
        # deploy/k8s/beat.yaml: ["beat", "--metrics-port", "9102", "--metrics-host", ...]; the
        # release before it needed a schedule file of its own.
        local schedule=()
        if ! has_flag "beat no-schedule" "$(code_of beat)"; then
            mkdir -p "$STATE/hosts/beat/schedule"
            schedule=(--schedule "$STATE/hosts/beat/schedule/celerybeat")
        fi
        # shellcheck disable=SC2046
        spawn_connxt beat beat -- connxt beat ${schedule[@]+"${schedule[@]}"} \
            --metrics-port "$BEAT_METRICS_PORT" $(metrics_host_args beat beat)
        ;;
    internet/sandbox)
        spawn_connxt internet sandbox -- connxt sandbox --host 0.0.0.0 --port "$SANDBOX_PORT"
        ;;
    mon/prometheus)
        spawn mon prometheus -- prometheus --config.file="$STATE/prometheus/fleet.yml" \
            --storage.tsdb.path="$STATE/prometheus/data" \
            --web.listen-address="0.0.0.0:$PROMETHEUS_PORT"
        ;;
    *) die "host $host has no unit '$unit' (it runs: $(units_of "$host"))" ;;
    esac
}

# One `connxt worker -Q LANE --no-supervise` (as deploy/k8s/worker-*.yaml run them), with
# what the supervisor would give the lane: its threads, and the relay where it has it.
start_lane() {
    local host=$1 lane=$2 name queues threads relay index
    read -r name queues threads relay < <(awk -v l="$lane" '$1 == l' "$STATE/lanes")
    [ -n "$name" ] || die "no lane '$lane' (lanes: $(awk '{print $1}' "$STATE/lanes" | xargs))"
    index=$(awk -v l="$lane" '$1 == l {print NR}' "$STATE/lanes")
    # The metric files of the lane's previous life go with it (unit_argv's fresh TMPDIR).
    # shellcheck disable=SC2046
    spawn_connxt "$host" "$lane" CONNXT_WORKER_THREADS="$threads" CONNXT_OUTBOX_RELAY="$relay" \
        PROMETHEUS_MULTIPROC_DIR="$STATE/hosts/$host/tmp/$lane" \
        -- connxt worker -Q "$queues" --no-supervise --name "$lane@$(netns "$host")" \
        --metrics-port "$((WORKER_METRICS_BASE + index))" $(metrics_host_args worker "$host")
}

# PostgreSQL refuses to run as root: its commands run as the postgres user.
#
# The server forgets a client whose host vanished within about ten seconds, not a quarter
# of an hour later: a vanished worker's open transaction keeps its rows locked (a
# transaction row it was moving, the outbox rows its relay claimed) until the server's
# kernel gives up on the connection, and whoever waits for those rows waits as long.
# Keepalives find a silent client whose connection is idle (5 s, then 3 probes 2 s
# apart); tcp_user_timeout one whose connection has an answer in flight that is never
# acknowledged (10 s), where keepalives never start and TCP retransmits for ~15 minutes
# (measured: a worker host's link down, its processes killed, a redelivered initiation
# waited 63 s on such a row lock without tcp_user_timeout, and only because the link came
# back up and the dead host's kernel answered with a reset).
PG_OPTIONS="-c listen_addresses='*' -p $PG_PORT -k $STATE/db -c max_connections=400 \
-c fsync=off -c full_page_writes=off \
-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
-c tcp_user_timeout=10000"

start_postgres() {
    run_in db postgres -- runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$STATE/db/pg" \
        -o "$PG_OPTIONS" -l "$(log_of db postgres-server)" -w -t 60 start
}

stop_postgres() {
    local mode=${1:-fast}
    [ -f "$STATE/db/pg/postmaster.pid" ] || return 0
    ip netns exec "$(netns db)" runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$STATE/db/pg" \
        -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
}

init_postgres() {
    install -d -o postgres -g postgres -m 700 "$STATE/db/pg"
    chown postgres:postgres "$STATE/db"
    install -o postgres -g postgres -m 644 /dev/null "$(log_of db postgres-server)"
    runuser -u postgres -- "$(pg_bin)/initdb" -D "$STATE/db/pg" -U postgres -A trust \
        --no-sync -E UTF8 >"$(log_of db initdb)" 2>&1 || die "initdb failed: $(log_of db initdb)"
    # Trust on the fleet's own subnet only; nothing else reaches this namespace anyway.
    echo "host all all $FLEET_SUBNET.0/24 trust" >>"$STATE/db/pg/pg_hba.conf"
}

# A private RabbitMQ node (as tests/support/rabbitmq.py runs one): its own name, ports,
# data, cookie and configuration (deploy/fleet/rabbitmq.conf with the fleet's credentials).
rabbitmq_env() {
    local base=$STATE/db/rabbitmq
    echo RABBITMQ_NODENAME=connxt@localhost RABBITMQ_NODE_IP_ADDRESS=0.0.0.0 \
        RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT \
        ERL_EPMD_PORT=$RABBITMQ_EPMD_PORT HOME=$base/home \
        RABBITMQ_MNESIA_BASE=$base/mnesia RABBITMQ_LOG_BASE=$base/log \
        RABBITMQ_PID_FILE=$base/node.pid RABBITMQ_ENABLED_PLUGINS_FILE=$base/enabled_plugins \
        RABBITMQ_CONFIG_FILE=$base/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$base/advanced.config \
        RABBITMQ_CONF_ENV_FILE=$base/rabbitmq-env.conf RUNNING_UNDER_SYSTEMD=1
}

init_rabbitmq() {
    local base=$STATE/db/rabbitmq
    mkdir -p "$base/home" "$base/mnesia" "$base/log"
    echo "[]." >"$base/enabled_plugins"
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$base/home/.erlang.cookie")
    {
        cat "$ROOT/deploy/fleet/rabbitmq.conf"
        echo "heartbeat = ${CONNXT_FLEET_RABBITMQ_HEARTBEAT:-10}"
        echo "default_user = connxt"
        echo "default_pass = $AMQP_PASSWORD"
    } >"$base/rabbitmq.conf"
    chmod 600 "$base/rabbitmq.conf"
}

start_rabbitmq() {
    # shellcheck disable=SC2046
    spawn db rabbitmq $(rabbitmq_env) -- "$RABBITMQ_SERVER"
}

# stop_unit HOST UNIT [SIGNAL]: the unit's session, then whatever of it is left.
stop_unit() {
    local host=$1 unit=$2 sig=${3:-TERM}
    if [ "$host/$unit" = db/postgres ]; then
        [ "$sig" = KILL ] && stop_postgres immediate || stop_postgres fast
        return 0
    fi
    local pidfile pid
    pidfile=$(pid_of "$host" "$unit")
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -"$sig" -- "-$pid" 2>/dev/null || true
    wait_gone "$pid" "${CONNXT_FLEET_STOP_SECONDS:-30}" || kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# Every process in the host's namespace, the units' children included.
kill_host() {
    local host=$1 sig=${2:-KILL} pid
    [ "$host" = db ] && [ "$sig" != KILL ] && stop_postgres fast
    [ "$host" = db ] && [ "$sig" = KILL ] && stop_postgres immediate
    for pid in $(ip netns pids "$(netns "$host")" 2>/dev/null); do
        [ "$pid" = "$$" ] || kill -"$sig" "$pid" 2>/dev/null || true
    done
    rm -f "$STATE/run/$host".*.pid
}

wait_gone() {
    local pid=$1 seconds=$2 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

start_host() {
    local host=$1 unit
    for unit in $(units_of "$host"); do
        start_unit "$host" "$unit"
    done
}
