# What the fleet writes for its processes and its users, sourced by deploy/fleet/fleet.sh:
# the processes' settings (fleet.env), Prometheus's target files, fleet.json for the tests
# (tests/fleet) and the addresses `make fleet` prints.

# The manifests' ConfigMap, then the fleet's addresses and secrets, then the few settings a
# fleet on one machine needs; the last value of a key wins.
write_settings() {
    AMQP_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
    {
        "$FLEET_PYTHON" "$ROOT/deploy/fleet/plan.py" configmap
        echo "CONNXT_DATABASE_URL=postgresql+psycopg://postgres@$(addr db):$PG_PORT/connxt"
        echo "CONNXT_REDIS_URL=redis://$(addr db):$REDIS_PORT/0"
        echo "CONNXT_BROKER_URL=amqp://connxt:$AMQP_PASSWORD@$(addr db):$AMQP_PORT//"
        echo "CONNXT_PUBLIC_URL=http://$(addr lb)"
        echo "CONNXT_SANDBOX_URL=http://$(addr internet):$SANDBOX_PORT"
        echo "CONNXT_ENCRYPTION_KEYS=k1:$(head -c 32 /dev/urandom | base64)"
        # The API's clients are behind the balancer: their address is in X-Forwarded-For.
        echo "CONNXT_TRUSTED_PROXIES=$(addr lb)"
        # The merchant receiver (the sandbox) has a private address, which production never
        # notifies (nor over plain http).
        echo "CONNXT_ENV=development"
        echo "CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS=true"
        # About twenty processes share this machine's cores: small pools, so that none of
        # them waits for a core behind another's idle threads.
        echo "CONNXT_WORKER_THREADS=8"
        echo "CONNXT_NOTIFY_THREADS=8"
        echo "CONNXT_RECONCILE_THREADS=4"
        echo "CONNXT_WORKER_BATCHES=4"
        if [ -n "${CONNXT_FLEET_SETTINGS:-}" ]; then
            grep -E '^[A-Z_][A-Z0-9_]*=' "$CONNXT_FLEET_SETTINGS" || true
        fi
    } | awk -F= '!($1 in at) {order[++n] = $1} {at[$1] = $0} END {for (i = 1; i <= n; i++) print at[order[i]]}' \
        >"$STATE/fleet.env"
    chmod 600 "$STATE/fleet.env"
    # Lanes as the release's `connxt worker` would make them under these settings.
    local settings=()
    mapfile -t settings <"$STATE/fleet.env"
    (cd "$CODE" && env -i "${settings[@]}" "$VENV_BIN/python" "$ROOT/deploy/fleet/plan.py" lanes \
        2>/dev/null) >"$STATE/lanes"
    [ -s "$STATE/lanes" ] || die "no worker lanes (deploy/fleet/plan.py lanes)"
}

# `connxt ARGS` on HOST with the fleet's settings: its output here, its log in the unit's.
connxt_on() {
    local host=$1
    shift
    local settings=()
    mapfile -t settings <"$STATE/fleet.env"
    unit_argv "$host" cli "${settings[@]}" -- connxt "$@"
    (cd "$STATE/hosts/$host" && "${UNIT_ARGV[@]}" 2>>"$(log_of "$host" cli)")
}

write_prometheus_config() {
    local dir=$STATE/prometheus
    mkdir -p "$dir/targets" "$dir/data"
    cp "$ROOT/deploy/prometheus/fleet.yml" "$ROOT/deploy/prometheus/alerts.yml" "$dir/"
    # Each api host's metrics where its release serves them: off the public port where
    # `connxt api` has --metrics-port, on it before.
    local h apis=""
    for h in "${API_HOSTS[@]}"; do
        if has_flag "api --metrics-port" "$(code_of "$h")"; then
            apis+="$h=$(addr "$h"):$API_METRICS_PORT "
        else
            apis+="$h=$(addr "$h"):$API_PORT "
        fi
    done
    "$FLEET_PYTHON" - "$dir/targets" "$STATE/lanes" "$BEAT_METRICS_PORT" \
        "$WORKER_METRICS_BASE" "$LB_STATS_PORT" "$apis" \
        "$(for h in "${WORKER_HOSTS[@]}"; do echo -n "$h=$(addr "$h") "; done)" \
        "beat=$(addr beat)" "lb=$(addr lb)" <<'PY'
import json, sys
from pathlib import Path

out, lanes_file, beat_port, worker_base, lb_port = sys.argv[1:6]
hosts = lambda arg: [item.split("=") for item in arg.split()]
apis, workers, beat, lb = hosts(sys.argv[6]), hosts(sys.argv[7]), hosts(sys.argv[8]), hosts(sys.argv[9])
lanes = [line.split()[0] for line in Path(lanes_file).read_text().splitlines()]
groups = {
    "api": [{"targets": [a], "labels": {"host": h}} for h, a in apis],
    "worker": [
        {"targets": [f"{a}:{int(worker_base) + i}"], "labels": {"host": h, "lane": lane}}
        for h, a in workers
        for i, lane in enumerate(lanes, start=1)
    ],
    "beat": [{"targets": [f"{a}:{beat_port}"], "labels": {"host": h}} for h, a in beat],
    "lb": [{"targets": [f"{a}:{lb_port}"], "labels": {"host": h}} for h, a in lb],
}
for name, group in groups.items():
    # Prometheus watches the file: it reads a whole one, never one being written.
    written = Path(out) / f".{name}.json.new"
    written.write_text(json.dumps(group, indent=1) + "\n")
    written.replace(Path(out) / f"{name}.json")
PY
}

# What the tests (tests/fleet) read: addresses, URLs and the demo tenant.
write_fleet_json() {
    local hosts
    hosts=$(for h in "${FLEET_HOSTS[@]}"; do echo -n "$h=$(addr "$h") "; done)
    "$FLEET_PYTHON" - "$STATE" "$hosts" "$LB_STATS_PORT" "$PROMETHEUS_PORT" <<'PY'
import json, sys
from pathlib import Path

state, hosts, stats_port, prom_port = sys.argv[1:5]
addr = dict(item.split("=") for item in hosts.split())
env = dict(
    line.split("=", 1) for line in Path(state, "fleet.env").read_text().splitlines() if "=" in line
)
doc = {
    "hosts": addr,
    "balancer": env["CONNXT_PUBLIC_URL"],
    "balancer_stats": f"http://{addr['lb']}:{stats_port}/stats;csv",
    "sandbox": env["CONNXT_SANDBOX_URL"],
    "prometheus": f"http://{addr['mon']}:{prom_port}",
    "database": env["CONNXT_DATABASE_URL"].replace("+psycopg", ""),
    "redis": env["CONNXT_REDIS_URL"],
    "lanes": [line.split()[0] for line in Path(state, "lanes").read_text().splitlines()],
    "tenant": json.loads(Path(state, "tenant.json").read_text()),
}
path = Path(state, "fleet.json")
path.write_text(json.dumps(doc, indent=2) + "\n")
path.chmod(0o600)
PY
}

show_addresses() {
    local token
    token=$("$FLEET_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' \
        "$STATE/tenant.json")
    cat <<EOF

 Connxt fleet on $BRIDGE, $FLEET_SUBNET.0/24 (every address is inside the fleet's namespaces)
 -------------------------------------------------------------------------------------------
 balancer    http://$(addr lb)            haproxy (deploy/haproxy/haproxy.cfg), stats :$LB_STATS_PORT/stats
 api         $(addr api1):$API_PORT  $(addr api2):$API_PORT
 workers     $(addr worker1)  $(addr worker2)  $(addr worker3)   lanes: $(awk '{print $1}' "$STATE/lanes" | xargs)
 beat        $(addr beat)
 db          $(addr db)   PostgreSQL :$PG_PORT, Redis :$REDIS_PORT, RabbitMQ :$AMQP_PORT
 internet    http://$(addr internet):$SANDBOX_PORT   sandbox PSPs and the merchant receiver
 load        $(addr load)   where clients (and the demo) run
 prometheus  http://$(addr mon):$PROMETHEUS_PORT   (deploy/prometheus/fleet.yml, file_sd)
 demo token  $token   (also in $STATE/tenant.json)

 Try:   bash deploy/fleet/fleet.sh exec load curl -s http://$(addr lb)/readyz
        bash deploy/fleet/fleet.sh link worker3 down      (and up)
        bash deploy/fleet/fleet.sh status
 Logs:  $STATE/logs/<host>.<unit>.log          Remove: make fleet-down
EOF
}
