"""The `connxt` command: set-up, processes and operations."""

from __future__ import annotations

import argparse
import json
import os
import sys

# `connxt keys check` (and any command) when the key cannot open what the database holds.
KEY_MISMATCH_EXIT = 3


def _db_upgrade(_args: argparse.Namespace) -> None:
    from storage.migrate import upgrade

    upgrade()
    print("database migrated to head")


def _catalog_sync(_args: argparse.Namespace) -> None:
    from connectors.catalog import target_spec
    from connectors.registry import all_connectors
    from storage.catalog import sync_catalog
    from storage.db import session_scope

    with session_scope() as session:
        created = sync_catalog(session, [target_spec(c) for c in all_connectors().values()])
    print("catalog synced: " + ", ".join(f"{k}+{v}" for k, v in created.items()))


def _catalog_status(args: argparse.Namespace) -> None:
    from connxt.settings import get_settings
    from storage.catalog import DISABLED, ENABLED, UnknownCatalogEntry, set_status
    from storage.db import session_scope

    status = DISABLED if args.catalog_command == "disable" else ENABLED
    try:
        with session_scope() as session:
            changed = set_status(session, args.target, args.action, status)
    except UnknownCatalogEntry as exc:
        sys.exit(str(exc))
    what = f"{args.target} {args.action.upper()}" if args.action else args.target
    bound = get_settings().catalog_cache_seconds
    print(f"{what} ({changed}) is {status}: every ingress follows within {bound:g} s")


def _keys_check(_args: argparse.Namespace) -> None:
    from connxt.secrets import key_mismatch_message, key_ring
    from connxt.settings import get_settings
    from storage.db import session_scope
    from storage.key_check import opens_what_is_stored

    with session_scope() as session:
        fits = opens_what_is_stored(session, key_ring())
    if not fits:
        print(key_mismatch_message(get_settings()), file=sys.stderr)
        sys.exit(KEY_MISMATCH_EXIT)
    print(f"key {key_ring().fingerprint()} opens what the database holds")


def _keys_fingerprint(_args: argparse.Namespace) -> None:
    from connxt.secrets import key_ring

    print(key_ring().fingerprint())


def _tenants_create(args: argparse.Namespace) -> None:
    from connxt.secrets import key_ring
    from storage.db import session_scope
    from storage.tenants import create_tenant

    with session_scope() as session:
        issued = create_tenant(session, key_ring(), args.brand, args.environment)
    out = {
        "brandId": issued.brand_id,
        "environmentId": issued.environment_id,
        "token": issued.token,
        "notificationSecret": issued.notification_secret,
    }
    if args.json:
        # ``webhookSecret``: the same secret under its name before notifications were named
        # as such, for scripts written then.
        print(json.dumps({**out, "webhookSecret": issued.notification_secret}))
    else:
        for key, value in out.items():
            print(f"{key:18} {value}")
        print("the token and the notification secret are shown once: keep them")


def _tenants_revoke(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.tenants import revoke_token

    with session_scope() as session:
        revoked = revoke_token(session, args.token)
    if not revoked:
        sys.exit("no working token matches (unknown, or revoked already)")
    # The ingress remembers a known token for at most this long (api_gateway.auth).
    print("token revoked: refused everywhere within 10 seconds")


def _tenants_rotate(args: argparse.Namespace) -> None:
    from datetime import UTC

    from storage.db import session_scope
    from storage.tenants import find_environment, rotate_tokens

    if args.grace < 0:
        sys.exit("--grace must be 0 or more seconds")
    with session_scope() as session:
        env = find_environment(session, args.brand, args.environment)
        if env is None:
            sys.exit("no such brand/environment")
        rotated = rotate_tokens(session, env, args.grace)
    out = {
        "brandId": rotated.brand_id,
        "environmentId": rotated.environment_id,
        "token": rotated.token,
        "previousTokens": rotated.retired,
        "previousTokensStopAt": rotated.retired_at.astimezone(UTC).isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:20} {value}")
        print("the new token is shown once: keep it")


def _tenants_notification_url(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.tenants import find_environment
    from workers.notify_urls import UnsafeUrl, check_merchant_url

    try:
        check_merchant_url(args.url)
    except UnsafeUrl as exc:
        sys.exit(f"refused: {exc}")
    with session_scope() as session:
        env = find_environment(session, args.brand, args.environment)
        if env is None:
            sys.exit("no such brand/environment")
        env.notification_url = args.url
        if args.return_url is not None:
            env.return_url = args.return_url or None
    print(f"merchant notifications for {args.brand}/{args.environment}: {args.url}")


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "api_gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
        # Uvicorn's records go through our root handler (connxt.logging), redaction included,
        # rather than through handlers of its own.
        log_config=None,
    )


def _console(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "console.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
    )


def _queue_depth_collector():
    """``connxt_queue_depth{queue}`` of every lane, read from the broker at each scrape."""
    from connectors.registry import queue_depths
    from connxt.metrics import QueueDepth

    return QueueDepth(queue_depths)


def _serve_worker_metrics(port: int) -> None:
    """Pool processes write metric files to one directory; this parent serves their sum."""
    import tempfile

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="connxt-metrics-"))
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_queue_depth_collector())
    start_http_server(port, registry=registry)


def _serve_beat_metrics(port: int) -> None:
    """Beat's own metrics: what it sent, by task, and the queues' depth."""
    from celery.signals import before_task_publish
    from prometheus_client import REGISTRY, start_http_server

    from connxt.metrics import BEAT_SENT

    @before_task_publish.connect(weak=False)
    def _count(sender=None, **_kwargs) -> None:
        BEAT_SENT.labels(str(sender)).inc()

    REGISTRY.register(_queue_depth_collector())
    start_http_server(port)


def _worker(args: argparse.Namespace) -> None:
    if not args.no_supervise:
        sys.exit(_supervise_lanes(args))
    if args.metrics_port:
        _serve_worker_metrics(args.metrics_port)  # before anything imports prometheus_client
    from connectors.registry import lane_queues
    from connxt.secrets import key_ring
    from connxt.settings import get_settings
    from workers.app import celery_app

    key_ring()  # refuse to start without keys in production

    argv = ["worker", "-Q", args.queues or ",".join(lane_queues()), "--loglevel", args.loglevel]
    # Threads by default: a batch's items (and PSP calls) run on threads of their own
    # (workers.batch), so the pool only holds the batches being worked on.
    concurrency = args.concurrency or get_settings().worker_batches
    argv += ["--pool", args.pool or "threads", "--concurrency", str(concurrency)]
    if args.name:
        argv += ["--hostname", args.name]
    celery_app.worker_main(argv)


def _supervise_lanes(args: argparse.Namespace) -> int:
    """One supervised Celery process per lane (or one for the queues given with -Q)."""
    from commands.supervise import supervise_all
    from connxt.settings import get_settings
    from workers.lanes import Lane, default_lanes

    settings = get_settings()
    if args.metrics_port:
        # The lanes write their metrics to one directory (inherited); this process serves it.
        _serve_worker_metrics(args.metrics_port)
    if args.queues:
        lanes = [Lane("worker", tuple(args.queues.split(",")), settings.worker_threads, True)]
    else:
        lanes = default_lanes(settings)
    common = ["--loglevel", args.loglevel, "--no-supervise"]
    if args.concurrency:
        common += ["--concurrency", str(args.concurrency)]
    if args.pool:
        common += ["--pool", args.pool]
    # Node names are unique per `connxt worker`, not only per host: two of them on one host
    # (a second group, a rolling restart) would otherwise share one name, which RabbitMQ
    # refuses (each node's control queue is exclusive to it).
    group = os.getpid()
    children = {
        lane.name: (
            ["worker", "-Q", ",".join(lane.queues), "--name", f"{lane.name}-{group}@%h", *common],
            {
                "CONNXT_WORKER_THREADS": str(lane.threads),
                "CONNXT_OUTBOX_RELAY": "true" if lane.relay and settings.outbox_relay else "false",
            },
        )
        for lane in lanes
    }
    return supervise_all(children)


def _beat(args: argparse.Namespace) -> None:
    if args.metrics_port:
        _serve_beat_metrics(args.metrics_port)
    from connxt import tracing
    from workers.app import celery_app

    if tracing.setup("connxt-beat"):  # with OTEL_EXPORTER_OTLP_ENDPOINT only
        tracing.instrument_celery()

    celery_app.start(["beat", "--loglevel", args.loglevel, "-s", args.schedule])


def _flower(args: argparse.Namespace) -> None:
    try:
        import flower  # noqa: F401  (Celery finds its command through the import)
    except ImportError:
        sys.exit("Flower is not installed: pip install 'connxt[ops]'")
    from workers.app import celery_app

    argv = ["flower", f"--address={args.host}", f"--port={args.port}"]
    if args.url_prefix:
        argv.append(f"--url_prefix={args.url_prefix}")
    celery_app.start(argv)


def _sandbox(args: argparse.Namespace) -> None:
    from sandbox.server import run

    run(args.host, args.port)


def _demo(args: argparse.Namespace) -> None:
    from commands.demo import run_demo

    sys.exit(run_demo(args.api, args.sandbox, args.token))


def _txn_show(args: argparse.Namespace) -> None:
    from commands.operations import show_transaction

    sys.exit(show_transaction(args.txn_id))


def _txn_resolve(args: argparse.Namespace) -> None:
    from commands.operations import resolve_transaction

    sys.exit(resolve_transaction(args.txn_id, args.status, args.reason))


def _reconcile(args: argparse.Namespace) -> None:
    from commands.operations import reconcile_now

    sys.exit(reconcile_now(args.txn))


def _webhooks_replay(args: argparse.Namespace) -> None:
    from commands.operations import replay_inbox

    sys.exit(replay_inbox(args.inbox_id))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connxt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema").set_defaults(func=_db_upgrade)

    catalog = sub.add_parser("catalog", help="PSP catalog").add_subparsers(
        dest="catalog_command", required=True
    )
    catalog.add_parser("sync", help="write the connectors' catalog").set_defaults(
        func=_catalog_sync
    )
    for verb, meaning in (("disable", "take out of service"), ("enable", "put back in service")):
        status = catalog.add_parser(verb, help=f"{meaning}: a flow target, or one of its actions")
        status.add_argument("--target", required=True, help="the flow target's name (Paymaxis)")
        status.add_argument("--action", default=None, help="one action only (DEPOSIT, ...)")
        status.set_defaults(func=_catalog_status)

    keys = sub.add_parser("keys", help="the encryption key ring").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser(
        "check", help=f"does the key open what the database holds (else exit {KEY_MISMATCH_EXIT})"
    ).set_defaults(func=_keys_check)
    keys.add_parser("fingerprint", help="8 hex digits naming the sealing key").set_defaults(
        func=_keys_fingerprint
    )

    tenants = sub.add_parser("tenants", help="brands and environments").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="create a tenant and issue a token")
    create.add_argument("--brand", required=True)
    create.add_argument("--environment", required=True)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_tenants_create)
    revoke = tenants.add_parser("revoke", help="stop one API token now")
    revoke.add_argument("--token", required=True)
    revoke.set_defaults(func=_tenants_revoke)
    rotate = tenants.add_parser(
        "rotate", help="issue a new API token; the environment's others stop after --grace"
    )
    rotate.add_argument("--brand", required=True)
    rotate.add_argument("--environment", required=True)
    rotate.add_argument(
        "--grace", type=int, default=0, help="seconds the previous tokens keep working (0)"
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=_tenants_rotate)
    # `webhook`: the command's name before notifications were named as such.
    hook = tenants.add_parser(
        "notification-url", aliases=["webhook"], help="set the merchant notification URL"
    )
    hook.add_argument("--brand", required=True)
    hook.add_argument("--environment", required=True)
    hook.add_argument("--url", required=True)
    hook.add_argument("--return-url", default=None, help="where customers land after paying")
    hook.set_defaults(func=_tenants_notification_url)

    api = sub.add_parser("api", help="run the HTTP ingress")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(func=_api)

    console = sub.add_parser("console", help="run the operator console (a web UI)")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=int, default=8200)
    console.set_defaults(func=_console)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("-Q", "--queues", default=None)
    worker.add_argument("-c", "--concurrency", type=int, default=None)
    worker.add_argument("-P", "--pool", default=None)
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    worker.add_argument("--name", default=None, help="the Celery node name (one per lane)")
    worker.add_argument(
        "--no-supervise", action="store_true", help="run Celery in this process, no restarts"
    )
    worker.set_defaults(func=_worker)

    beat = sub.add_parser("beat", help="run the scheduler")
    beat.add_argument("--loglevel", default="INFO")
    beat.add_argument("--schedule", default=".connxt/celerybeat-schedule")
    beat.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    beat.set_defaults(func=_beat)

    flower = sub.add_parser("flower", help="run Flower (Celery's web monitor) on the broker")
    flower.add_argument("--host", default="127.0.0.1")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--url-prefix", default=None, help="when served under a path")
    flower.set_defaults(func=_flower)

    sandbox = sub.add_parser("sandbox", help="run the simulated PSPs")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.set_defaults(func=_sandbox)

    demo = sub.add_parser("demo", help="walk through Steps 1-3 against a running service")
    demo.add_argument("--api", default="http://127.0.0.1:8000")
    demo.add_argument("--sandbox", default="http://127.0.0.1:8100")
    demo.add_argument("--token", required=True)
    demo.set_defaults(func=_demo)

    txn = sub.add_parser("txn", help="transactions").add_subparsers(
        dest="txn_command", required=True
    )
    show = txn.add_parser("show", help="everything about one transaction")
    show.add_argument("txn_id")
    show.set_defaults(func=_txn_show)
    resolve = txn.add_parser(
        "resolve", help="decide a transaction held for review (amount mismatch, late success)"
    )
    resolve.add_argument("txn_id")
    resolve.add_argument("--status", required=True, choices=["SUCCESS", "FAILED"])
    resolve.add_argument("--reason", required=True, help="why: recorded with the decision")
    resolve.set_defaults(func=_txn_resolve)

    reconcile = sub.add_parser("reconcile", help="ask PSPs about open transactions now")
    reconcile.add_argument("--txn", default=None)
    reconcile.set_defaults(func=_reconcile)

    webhooks = sub.add_parser("webhooks", help="PSP notifications").add_subparsers(
        dest="webhooks_command", required=True
    )
    replay = webhooks.add_parser("replay", help="process a stored notification again")
    replay.add_argument("inbox_id", type=int)
    replay.set_defaults(func=_webhooks_replay)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from connxt.logging import configure_logging
    from connxt.settings import get_settings

    configure_logging(get_settings())
    from cryptography.exceptions import InvalidTag

    from connxt.secrets import KeyRingError, UnknownKey, key_mismatch_message

    try:
        args.func(args)
    except (InvalidTag, UnknownKey):
        # A sealed value this key cannot open: say why and what to do, not a traceback.
        print(key_mismatch_message(get_settings()), file=sys.stderr)
        sys.exit(KEY_MISMATCH_EXIT)
    except KeyRingError as exc:
        print(f"connxt: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
