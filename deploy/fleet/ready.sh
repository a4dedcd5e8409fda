# When is a unit ready, sourced by deploy/fleet/fleet.sh. Each check is made from another
# host of the fleet, over the fleet's network, as its clients would see the unit: the
# balancer asks an api host's /readyz, Prometheus a worker's metrics, a client the sandbox.

http_ok() {
    local from=$1 url=$2
    ip netns exec "$(netns "$from")" curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null
}

# What the unit logged since its latest start (a restarted unit appends to its log).
log_since_start() {
    local log since
    log=$(log_of "$1" "$2")
    since=$(cat "$STATE/run/$1.$2.since" 2>/dev/null || echo 0)
    tail -c "+$((since + 1))" "$log" 2>/dev/null || true
}

unit_ready() {
    local host=$1 unit=$2
    case "$host/$unit" in
    db/postgres)
        ip netns exec "$(netns db)" "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
        ;;
    db/redis)
        [ "$(ip netns exec "$(netns db)" redis-cli -h "$(addr db)" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
        ;;
    db/rabbitmq) log_since_start db rabbitmq | grep -q "Server startup complete" ;;
    lb/haproxy)
        # Through the balancer, with both api hosts UP in its own view.
        http_ok load "http://$(addr lb):$LB_PORT/readyz" &&
            [ "$(ip netns exec "$(netns load)" curl -fsS --max-time 2 \
                "http://$(addr lb):$LB_STATS_PORT/stats;csv" 2>/dev/null |
                awk -F, '$1 == "api" && $2 ~ /^api[0-9]/ && $18 == "UP"' | wc -l)" -eq "${#API_HOSTS[@]}" ]
        ;;
    api*/api) http_ok lb "http://$(addr "$host"):$API_PORT/readyz" ;;
    worker*/*) log_since_start "$host" "$unit" | grep -q " ready\." ;;
    beat/beat) http_ok mon "http://$(addr beat):$BEAT_METRICS_PORT/metrics" ;;
    internet/sandbox) http_ok load "http://$(addr internet):$SANDBOX_PORT/_control" ;;
    mon/prometheus) http_ok load "http://$(addr mon):$PROMETHEUS_PORT/-/ready" ;;
    *) return 1 ;;
    esac
}

unit_dead() {
    [ "$1/$2" = db/postgres ] && return 1
    local pidfile
    pidfile=$(pid_of "$1" "$2")
    [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# wait_host HOST [UNIT]: every unit of the host (or the one) ready within READY_SECONDS.
wait_host() {
    local host=$1 only=${2:-} unit deadline=$((SECONDS + READY_SECONDS))
    for unit in ${only:-$(units_of "$host")}; do
        until unit_ready "$host" "$unit"; do
            if unit_dead "$host" "$unit" || [ "$SECONDS" -ge "$deadline" ]; then
                echo "[fleet] $host/$unit is not ready; the end of $(log_of "$host" "$unit"):" >&2
                tail -n 25 "$(log_of "$host" "$unit")" >&2 || true
                die "$host/$unit did not come up"
            fi
            sleep 0.3
        done
    done
}

wait_db() { wait_host db; }
