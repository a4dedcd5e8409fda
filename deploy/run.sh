#!/usr/bin/env bash
# The whole service on this machine, in the foreground, with a demo tenant and a demo run:
# sandbox PSPs, API, worker and beat (each serving Prometheus metrics), Flower and the
# operator console, their output prefixed by process name. Ctrl-C stops everything (within
# a few seconds: a grace period, then SIGKILL), as does closing the terminal or a SIGTERM.
#
#   bash deploy/run.sh        CONNXT_API_PORT (8000), CONNXT_SANDBOX_PORT (8100),
#                             CONNXT_CONSOLE_PORT (8200), CONNXT_FLOWER_PORT (5555),
#                             CONNXT_WORKER_METRICS_PORT (9101) and
#                             CONNXT_BEAT_METRICS_PORT (9102) move ports
#
# The database is CONNXT_DB_NAME, else the one in CONNXT_DATABASE_URL, else connxt. When
# this checkout's key cannot open what that database holds (another checkout's, or a key
# that was lost), the run says so and uses a database of this key's own instead,
# <name>_<key fingerprint>. Local state (the key, the demo tenant, the operator token)
# lives in CONNXT_STATE_DIR (this checkout's .connxt/, where every `connxt` command of this
# checkout finds it, from any directory: connxt/state.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

HOST=127.0.0.1
API_PORT=${CONNXT_API_PORT:-8000}
SANDBOX_PORT=${CONNXT_SANDBOX_PORT:-8100}
CONSOLE_PORT=${CONNXT_CONSOLE_PORT:-8200}
FLOWER_PORT=${CONNXT_FLOWER_PORT:-5555}
API_METRICS_PORT=${CONNXT_API_METRICS_PORT:-9100}
WORKER_METRICS_PORT=${CONNXT_WORKER_METRICS_PORT:-9101}
BEAT_METRICS_PORT=${CONNXT_BEAT_METRICS_PORT:-9102}
API_URL="http://$HOST:$API_PORT"
SANDBOX_URL="http://$HOST:$SANDBOX_PORT"
CONSOLE_URL="http://$HOST:$CONSOLE_PORT"
STATE_DIR=$(realpath -m "${CONNXT_STATE_DIR:-.connxt}")
TENANT_FILE=$STATE_DIR/demo-tenant.json
OPERATOR_FILE=$STATE_DIR/operator-token
STOP_GRACE_SECONDS=6 # then SIGKILL: Ctrl-C ends everything within ~7 s

say() { echo "[run] $*"; }
die() {
    echo "[run] ERROR: $*" >&2
    exit 1
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# --- set-up -------------------------------------------------------------------------------

bash deploy/bootstrap.sh

for port in "$API_PORT" "$SANDBOX_PORT" "$CONSOLE_PORT" "$FLOWER_PORT" "$API_METRICS_PORT" "$WORKER_METRICS_PORT" "$BEAT_METRICS_PORT"; do
    port_in_use "$port" &&
        die "port $port on $HOST is taken (another run?); see the CONNXT_*_PORT settings at the top"
done

export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONUNBUFFERED=1
export CONNXT_PUBLIC_URL=${CONNXT_PUBLIC_URL:-$API_URL}
export CONNXT_SANDBOX_URL=${CONNXT_SANDBOX_URL:-$SANDBOX_URL}
# The demo's merchant receiver is the sandbox, on loopback: allowed here, never by default.
export CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS=${CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS:-true}
# The demo's Sticpay settles each Seoul day in that day's file: what it has not settled by
# the demo's run is missing, not pending (Paymaxis keeps the 2-day default), so the demo's
# reconciliation shows both classes (commands/demo_recon.py).
export CONNXT_RECON_SETTLEMENT_WINDOWS=${CONNXT_RECON_SETTLEMENT_WINDOWS:-'{"Sticpay": 0}'}
mkdir -p "$STATE_DIR"
export CONNXT_STATE_DIR=$STATE_DIR
# Ctrl-C stops at once: nothing balances this single API, so there is nothing to drain.
export CONNXT_DRAIN_SECONDS=${CONNXT_DRAIN_SECONDS:-0}

# The database every process uses: CONNXT_DB_NAME names it in the URL.
DB_URL=${CONNXT_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:${CONNXT_PG_PORT:-5432}/connxt}
DB_NAME=${CONNXT_DB_NAME:-$(basename "${DB_URL%%\?*}")}
use_database() {
    DB_NAME=$1
    CONNXT_DATABASE_URL="${DB_URL%/*}/$DB_NAME"
    export CONNXT_DATABASE_URL
}
use_database "$DB_NAME"

prepare_database() {
    say "connxt db upgrade ($DB_NAME)"
    connxt db upgrade
    say "connxt catalog sync"
    connxt catalog sync
}

prepare_database
# `connxt keys check` exits 3 after saying, in one sentence, that this key cannot open what
# the database holds and what to do; the demo then runs in a database of this key's own.
set +e
connxt keys check
key_check=$?
set -e
if [ "$key_check" -eq 3 ]; then
    use_database "${DB_NAME}_$(connxt keys fingerprint)"
    say "this run uses the database $DB_NAME instead, which belongs to this checkout's key"
    bash deploy/services.sh "$DB_NAME"
    prepare_database
    connxt keys check || die "the key cannot open the database $DB_NAME either"
elif [ "$key_check" -ne 0 ]; then
    die "connxt keys check failed (exit $key_check)"
fi

say "demo tenant: brand demo, environment sandbox"
tenant_out=$(connxt tenants create --brand demo --environment sandbox --json)
# Keep the one JSON line (anything else the command prints is left out).
printf '%s\n' "$tenant_out" | python -c '
import json, sys
for line in reversed(sys.stdin.read().splitlines()):
    try:
        doc = json.loads(line)
    except ValueError:
        continue
    if isinstance(doc, dict) and doc.get("token"):
        print(json.dumps(doc))
        sys.exit(0)
sys.exit("connxt tenants create printed no JSON line with a token")
' >"$TENANT_FILE.tmp"
mv "$TENANT_FILE.tmp" "$TENANT_FILE"
chmod 600 "$TENANT_FILE"
TOKEN=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' "$TENANT_FILE")
# The demo's merchant receiver (in the sandbox) verifies our notifications with this secret.
CONNXT_DEMO_NOTIFICATION_SECRET=$(python -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d.get("notificationSecret") or d["webhookSecret"])' "$TENANT_FILE")
export CONNXT_DEMO_NOTIFICATION_SECRET

connxt tenants notification-url --brand demo --environment sandbox --url "$SANDBOX_URL/merchant/notifications"

# The console's operator (every tenant): a token kept in $STATE_DIR, unless operators are
# configured already.
if [ -z "${CONNXT_OPERATOR_TOKENS:-}" ]; then
    if [ ! -s "$OPERATOR_FILE" ]; then
        (umask 077 && python -c 'import secrets; print("opr_" + secrets.token_urlsafe(32))' >"$OPERATOR_FILE")
    fi
    CONNXT_OPERATOR_TOKENS="local-operator:$(cat "$OPERATOR_FILE")"
    export CONNXT_OPERATOR_TOKENS
    OPERATOR_HINT="$(cat "$OPERATOR_FILE")  (also in $OPERATOR_FILE)"
else
    OPERATOR_HINT="one of CONNXT_OPERATOR_TOKENS"
fi

# --- processes ----------------------------------------------------------------------------

if echo | sed -u p >/dev/null 2>&1; then SED=(sed -u); else SED=(sed -l); fi

# Each child pipeline gets a process group of its own (job control on while they start), so
# stopping one group stops the process, its children (the worker's lanes) and its output
# filter together. While stopping, a second Ctrl-C (or the terminal closing) is ignored:
# it must not kill this script halfway and leave the rest running.
stop_all() {
    trap '' INT TERM HUP
    trap - EXIT
    local groups pgid
    groups=$(jobs -p)
    [ -n "$groups" ] || return 0
    say "stopping" || true # the terminal may be gone already
    for pgid in $groups; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    local deadline=$((SECONDS + STOP_GRACE_SECONDS))
    while [ "$SECONDS" -lt "$deadline" ]; do
        local alive=0
        for pgid in $groups; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 1 ] || break
        sleep 0.2
    done
    for pgid in $groups; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

start() {
    local name=$1
    shift
    local prefix
    prefix=$(printf '[%-7s] ' "$name")
    "$@" </dev/null 2>&1 | "${SED[@]}" "s/^/$prefix/" &
}

set -m
start sandbox connxt sandbox --host "$HOST" --port "$SANDBOX_PORT"
start api connxt api --host "$HOST" --port "$API_PORT" --metrics-port "$API_METRICS_PORT"
start worker connxt worker --metrics-port "$WORKER_METRICS_PORT" \
    ${CONNXT_WORKER_CONCURRENCY:+--concurrency "$CONNXT_WORKER_CONCURRENCY"}
start beat connxt beat --metrics-port "$BEAT_METRICS_PORT"
start flower connxt flower --host "$HOST" --port "$FLOWER_PORT"
start console connxt console --host "$HOST" --port "$CONSOLE_PORT"
set +m

# --- ready, demo, walkthrough -------------------------------------------------------------

say "waiting for $API_URL/healthz"
python - "$API_URL/healthz" "$HOST" "$SANDBOX_PORT" <<'PY' || die "the API or the sandbox did not come up"
import socket, sys, time, urllib.request

url, host, sandbox_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 60
api = sandbox = False
while time.monotonic() < deadline and not (api and sandbox):
    if not api:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                api = resp.status == 200
        except OSError:
            pass
    if not sandbox:
        try:
            socket.create_connection((host, sandbox_port), timeout=1).close()
            sandbox = True
        except OSError:
            pass
    time.sleep(0.3)
sys.exit(0 if api and sandbox else 1)
PY

say "connxt demo"
if ! connxt demo --api "$API_URL" --sandbox "$SANDBOX_URL" --token "$TOKEN"; then
    say "WARNING: the demo did not complete (see the output above); the services keep running"
fi

python - "$API_URL" "$SANDBOX_URL" "$TOKEN" "$TENANT_FILE" "$CONSOLE_URL" "$OPERATOR_HINT" \
    "http://$HOST:$FLOWER_PORT" "http://$HOST:$API_METRICS_PORT/metrics" \
    "http://$HOST:$WORKER_METRICS_PORT/metrics" "http://$HOST:$BEAT_METRICS_PORT/metrics" <<'PY'
import json, sys, urllib.request

(api, sandbox, token, tenant_file, console, operator, flower, api_metrics, worker_metrics,
 beat_metrics) = sys.argv[1:11]
ftg, fat, fld, cred = "<ftg_ from step 1>", "<fat_ of DEPOSIT>", "<fld_ of DEPOSIT>", {"apiKey": "..."}
try:
    req = urllib.request.Request(
        f"{api}/connxt/v2/flow-types/definitions?type=PSP", headers={"X-SECRET-TOKEN": token}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        targets = json.load(resp)["data"]["targets"]
    for target in targets:
        deposit = [a for a in target["actions"] if a["name"] == "DEPOSIT" and a.get("definition")]
        if deposit:
            ftg, fat, fld = target["id"], deposit[0]["id"], deposit[0]["definition"]["id"]
            schema = target.get("credentialSchema") or {}
            cred = {field: "sandbox" for field in schema.get("required", [])} or cred
            break
except Exception:  # the walkthrough keeps its placeholders
    pass

psp = {
    "name": "My PSP",
    "credential": json.dumps(cred),
    "flowTargetId": ftg,
    "operations": [{"flowActionId": fat, "flowDefinitionId": fld, "status": "ENABLED"}],
}
txn = {
    "flowActionId": fat,
    "flowTargetId": ftg,
    "pspId": "<psp_ from step 2>",
    "transactionType": "deposit",
    "txnCurrency": "USD",
    "txnAmount": 12,
    "executePayload": {"body": {
        "order": {"id": "order-1", "money": {"amount": 12, "currency": "USD"}},
        "customer": {"id": "cust_001", "firstName": "Ada", "lastName": "Lovelace",
                     "email": "ada@example.com"},
    }},
}
auth = f"-H 'X-SECRET-TOKEN: {token}'"
json_h = "-H 'Content-Type: application/json'"
print(f"""
================================================================================
 Connxt is running                                    Ctrl-C stops everything
--------------------------------------------------------------------------------
 API            {api}/connxt/v2      (docs: {api}/docs)
 Sandbox PSPs   {sandbox}      (merchant notifications land here too)
 Flower         {flower}      (the workers, their tasks and queues)
 Metrics        {api_metrics}  {worker_metrics}  {beat_metrics}
                (Prometheus: deploy/prometheus/prometheus.yml scrapes these three)
 Demo token     {token}
                (also in {tenant_file})
 Console        {console}
                sign in with the demo token (brand demo, sandbox), or as an operator
                (every tenant) with {operator}

 Step 1 - flow types, targets and their actions:
   curl -s '{api}/connxt/v2/flow-types/definitions?type=PSP' {auth}

 Step 2 - register a PSP account (ids from step 1):
   curl -s -X POST '{api}/connxt/v2/psps/external' {json_h} {auth} \\
     -d '{json.dumps(psp)}'

 Step 3 - a deposit (pspId from step 2); open data.data.data.navigation.value:
   curl -s -X POST '{api}/connxt/v2/transactions' {json_h} {auth} \\
     -d '{json.dumps(txn)}'

 Then: curl -s '{api}/connxt/v2/transactions/<txn_id>' {auth}
       .venv/bin/connxt txn show <txn_id>
================================================================================
""")
PY

# In the foreground until Ctrl-C, or until one of the processes ends.
set +e
wait -n
rc=$?
set -e
say "a process exited (code $rc); stopping the rest"
exit 1
