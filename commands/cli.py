"""The `connxt` command: set-up, processes and operations."""

from __future__ import annotations

import argparse
import json
import os
import sys

from commands import exits, recon

# `connxt keys check` (and any command) when the key cannot open what the database holds.
KEY_MISMATCH_EXIT = exits.KEY_MISMATCH


def _db_upgrade(_args: argparse.Namespace) -> None:
    from commands.audit import cli_actor
    from storage import audit
    from storage.db import session_scope
    from storage.migrate import upgrade

    upgrade()
    with session_scope() as session:
        audit.record(session, cli_actor(), "database.upgraded", "schema")
    print("database migrated to head")


def _catalog_sync(_args: argparse.Namespace) -> None:
    from commands.audit import cli_actor
    from connectors.catalog import target_spec
    from connectors.registry import all_connectors
    from storage import audit
    from storage.catalog import sync_catalog
    from storage.db import session_scope

    with session_scope() as session:
        created = sync_catalog(session, [target_spec(c) for c in all_connectors().values()])
        audit.record(session, cli_actor(), "catalog.synced", "catalog", None, {"created": created})
    print("catalog synced: " + ", ".join(f"{k}+{v}" for k, v in created.items()))


def _catalog_status(args: argparse.Namespace) -> None:
    from commands.audit import cli_actor
    from connxt.settings import get_settings
    from storage import audit
    from storage.catalog import DISABLED, ENABLED, UnknownCatalogEntry, set_status, status_of
    from storage.db import session_scope

    status = DISABLED if args.catalog_command == "disable" else ENABLED
    what = f"{args.target} {args.action.upper()}" if args.action else args.target
    try:
        with session_scope() as session:
            before = status_of(session, args.target, args.action)
            changed = set_status(session, args.target, args.action, status)
            audit.record(
                session,
                cli_actor(),
                f"catalog.{args.catalog_command}d",
                what,
                {"status": before},
                {"status": status, "id": changed},
            )
    except UnknownCatalogEntry as exc:
        sys.exit(str(exc))
    bound = get_settings().catalog_cache_seconds
    print(f"{what} ({changed}) is {status}: every ingress follows within {bound:g} s")


def _keys_check(args: argparse.Namespace) -> None:
    from commands.keys import check

    sys.exit(check(args.json))


def _keys_reseal(args: argparse.Namespace) -> None:
    from commands.keys import reseal

    sys.exit(reseal(args.batch, args.json))


def _keys_fingerprint(args: argparse.Namespace) -> None:
    from connxt.secrets import key_ring

    fingerprint = key_ring().fingerprint()
    print(json.dumps({"fingerprint": fingerprint}) if args.json else fingerprint)


def _tenants_create(args: argparse.Namespace) -> None:
    from commands.tenants import create

    create(args.brand, args.environment, args.json)


def _tenants_revoke(args: argparse.Namespace) -> None:
    from commands.tenants import revoke

    revoke(args.token, args.token_id)


def _tenants_tokens(args: argparse.Namespace) -> None:
    from commands.tenants import tokens

    tokens(args.brand, args.environment, args.json)


def _tenants_rotate(args: argparse.Namespace) -> None:
    from commands.tenants import rotate

    rotate(args.brand, args.environment, args.grace, args.json)


def _tenants_rotate_secret(args: argparse.Namespace) -> None:
    from commands.tenants import rotate_secret

    rotate_secret(args.brand, args.environment, args.overlap, args.json)


def _tenants_notification_url(args: argparse.Namespace) -> None:
    from commands.tenants import notification_url

    notification_url(args.brand, args.environment, args.url, args.return_url)


def _customers_erase(args: argparse.Namespace) -> None:
    from commands.customers import erase

    sys.exit(erase(args.brand, args.customer_id, args.json))


def _audit_list(args: argparse.Namespace) -> None:
    from commands.audit import list_entries

    sys.exit(list_entries(args.since, args.limit, args.json))


def _api(args: argparse.Namespace) -> None:
    from commands.processes import run_api

    run_api(args)


def _console(args: argparse.Namespace) -> None:
    from commands.processes import run_console

    run_console(args)


def _worker(args: argparse.Namespace) -> None:
    from commands.processes import run_worker, supervise_lanes

    if not args.no_supervise:
        sys.exit(supervise_lanes(args))
    run_worker(args)


def _beat(args: argparse.Namespace) -> None:
    from commands.processes import run_beat

    run_beat(args)


def _flower(args: argparse.Namespace) -> None:
    from commands.processes import run_flower

    run_flower(args)


def _health_worker(args: argparse.Namespace) -> None:
    from commands.health import worker_answers

    if not worker_answers(args.timeout):
        print("no worker of this host answers a ping", file=sys.stderr)
        sys.exit(1)
    print("a worker of this host answers")


def _sandbox(args: argparse.Namespace) -> None:
    from sandbox.server import run

    run(args.host, args.port)


def _demo(args: argparse.Namespace) -> None:
    from commands.demo import run_demo

    sys.exit(run_demo(args.api, args.sandbox, args.token))


def _txn_show(args: argparse.Namespace) -> None:
    from commands.operations import show_transaction

    sys.exit(show_transaction(args.txn_id, args.json))


def _txn_resolve(args: argparse.Namespace) -> None:
    from commands.operations import resolve_transaction

    operator = (args.operator or _os_user() or "").strip()
    if not operator:
        sys.exit("connxt: say who decides (--operator NAME): the OS user is unknown")
    if len(operator) > 200:
        sys.exit("connxt: --operator is a name of at most 200 characters")
    sys.exit(
        resolve_transaction(
            args.txn_id, args.status, args.reason, operator, args.amount, args.currency
        )
    )


def _os_user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return None


def _psps_check(args: argparse.Namespace) -> None:
    from commands.operations import check_psps

    sys.exit(check_psps(args.json))


def _reconcile(args: argparse.Namespace) -> None:
    from commands.operations import reconcile_now

    sys.exit(reconcile_now(args.txn))


def _webhooks_replay(args: argparse.Namespace) -> None:
    from commands.operations import replay_inbox

    sys.exit(replay_inbox(args.inbox_id))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("connxt")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


def _port(variable: str, default: int) -> int:
    """A process's port: --port, else the one `make run` uses (CONNXT_*_PORT), else the
    default."""
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else default


def _metrics_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--metrics-port", type=int, default=None, help=what)
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics listen on (default loopback; 0.0.0.0 for a scraper elsewhere)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connxt",
        description=__doc__,
        epilog="Exit codes: 0 done, 1 refused or not done, 2 usage, 3 the key does not open "
        "what the database holds, 4 not found, 5 settings wrong. Errors go to stderr.",
    )
    parser.add_argument("--version", action="version", version=f"connxt {_version()}")
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
    keys_check = keys.add_parser(
        "check",
        help=f"does the key open what the database holds (else exit {KEY_MISMATCH_EXIT}), and "
        "does any value still need an older key",
    )
    keys_check.add_argument("--json", action="store_true")
    keys_check.set_defaults(func=_keys_check)
    keys_reseal = keys.add_parser(
        "reseal",
        help="seal everything under the ring's primary key, so older keys can leave the ring "
        "(resumable, safe while the service runs)",
    )
    keys_reseal.add_argument("--batch", type=int, default=200, help="rows per transaction")
    keys_reseal.add_argument("--json", action="store_true")
    keys_reseal.set_defaults(func=_keys_reseal)
    fingerprint = keys.add_parser("fingerprint", help="8 hex digits naming the sealing key")
    fingerprint.add_argument("--json", action="store_true")
    fingerprint.set_defaults(func=_keys_fingerprint)

    tenants = sub.add_parser("tenants", help="brands and environments").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="create a tenant and issue a token")
    create.add_argument("--brand", required=True)
    create.add_argument("--environment", required=True)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_tenants_create)
    revoke = tenants.add_parser(
        "revoke", help="stop one API token now: the token on stdin, or its id (tenants tokens)"
    )
    which = revoke.add_mutually_exclusive_group()
    which.add_argument(
        "--token",
        default=None,
        help="'-' (or nothing): read the token from standard input; a token given here "
        "works but stays in shell history",
    )
    which.add_argument("--token-id", type=int, default=None, help="the token's id")
    revoke.set_defaults(func=_tenants_revoke)
    listing = tenants.add_parser(
        "tokens", help="an environment's tokens: ids, issued and revoked times, never the token"
    )
    listing.add_argument("--brand", required=True)
    listing.add_argument("--environment", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_tenants_tokens)
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
    rotate_secret = tenants.add_parser(
        "rotate-secret",
        help="a new merchant notification secret; the previous one signs beside it for --overlap",
    )
    rotate_secret.add_argument("--brand", required=True)
    rotate_secret.add_argument("--environment", required=True)
    rotate_secret.add_argument(
        "--overlap",
        type=int,
        default=86400,
        help="seconds notifications carry both signatures (default a day; 0: the new one only)",
    )
    rotate_secret.add_argument("--json", action="store_true")
    rotate_secret.set_defaults(func=_tenants_rotate_secret)
    # `webhook`: the command's name before notifications were named as such.
    hook = tenants.add_parser(
        "notification-url", aliases=["webhook"], help="set the merchant notification URL"
    )
    hook.add_argument("--brand", required=True)
    hook.add_argument("--environment", required=True)
    hook.add_argument("--url", required=True)
    hook.add_argument("--return-url", default=None, help="where customers land after paying")
    hook.set_defaults(func=_tenants_notification_url)

    customers = sub.add_parser("customers", help="the customers of a brand")
    customers_sub = customers.add_subparsers(dest="customers_command", required=True)
    erase = customers_sub.add_parser(
        "erase",
        help="an erasure request: the customer's personal data is redacted now (open "
        "transactions: as soon as each ends)",
    )
    erase.add_argument("--brand", required=True)
    erase.add_argument("--customer-id", required=True, help="executePayload's customer.id")
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(func=_customers_erase)

    audit = sub.add_parser("audit", help="the audit trail of administrative acts")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_list = audit_sub.add_parser("list", help="entries, oldest first")
    audit_list.add_argument(
        "--since", default=None, help="24h, 7d, 30m or an ISO 8601 time (default: the latest)"
    )
    audit_list.add_argument("--limit", type=int, default=200)
    audit_list.add_argument("--json", action="store_true")
    audit_list.set_defaults(func=_audit_list)

    api = sub.add_parser("api", help="run the HTTP ingress")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=_port("CONNXT_API_PORT", 8000))
    api.add_argument("--workers", type=int, default=1)
    _metrics_options(api, "/metrics on a listener of its own (off the public port)")
    api.set_defaults(func=_api)

    console = sub.add_parser("console", help="run the operator console (a web UI)")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=int, default=_port("CONNXT_CONSOLE_PORT", 8200))
    console.set_defaults(func=_console)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("-Q", "--queues", default=None)
    worker.add_argument("-c", "--concurrency", type=int, default=None)
    worker.add_argument("-P", "--pool", default=None)
    worker.add_argument("--loglevel", default="INFO")
    _metrics_options(worker, "serve /metrics here")
    worker.add_argument("--name", default=None, help="the Celery node name (one per lane)")
    worker.add_argument(
        "--no-supervise", action="store_true", help="run Celery in this process, no restarts"
    )
    worker.set_defaults(func=_worker)

    beat = sub.add_parser("beat", help="run the scheduler")
    beat.add_argument("--loglevel", default="INFO")
    beat.add_argument(
        "--schedule",
        default=None,
        help="keep Celery's schedule in this file (default: none, nothing depends on it)",
    )
    _metrics_options(beat, "serve /metrics here")
    beat.set_defaults(func=_beat)

    health = sub.add_parser("health", help="health checks for containers")
    health_sub = health.add_subparsers(dest="health_command", required=True)
    health_worker = health_sub.add_parser(
        "worker", help="exit 0 when a worker on this host answers a ping through the broker"
    )
    health_worker.add_argument("--timeout", type=float, default=5.0)
    health_worker.set_defaults(func=_health_worker)

    flower = sub.add_parser("flower", help="run Flower (Celery's web monitor) on the broker")
    flower.add_argument("--host", default="127.0.0.1")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--url-prefix", default=None, help="when served under a path")
    flower.add_argument(
        "--basic-auth",
        default=None,
        help="user:password; needed (or FLOWER_BASIC_AUTH) to listen beyond loopback",
    )
    flower.set_defaults(func=_flower)

    sandbox = sub.add_parser("sandbox", help="run the simulated PSPs")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=_port("CONNXT_SANDBOX_PORT", 8100))
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
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_txn_show)
    resolve = txn.add_parser(
        "resolve", help="decide a transaction held for review (amount mismatch, late success)"
    )
    resolve.add_argument("txn_id")
    resolve.add_argument("--status", required=True, choices=["SUCCESS", "FAILED"])
    resolve.add_argument("--reason", required=True, help="why: recorded with the decision")
    resolve.add_argument(
        "--operator", default=None, help="who decides, recorded with it (default: the OS user)"
    )
    resolve.add_argument(
        "--amount",
        default=None,
        help="SUCCESS where the PSP stated no amount: what it took (recorded as captured)",
    )
    resolve.add_argument(
        "--currency",
        default=None,
        help="with --amount: its currency (default: the PSP's, or the transaction's)",
    )
    resolve.set_defaults(func=_txn_resolve)

    reconcile = sub.add_parser(
        "reconcile",
        help="status checks: ask PSPs now where open transactions stand "
        "(settlement reconciliation is `connxt recon`)",
    )
    reconcile.add_argument("--txn", default=None)
    reconcile.set_defaults(func=_reconcile)

    psps = sub.add_parser("psps", help="PSP accounts").add_subparsers(
        dest="psps_command", required=True
    )
    psps_check = psps.add_parser(
        "check", help="list PSP accounts without a webhook signing key (refused in production)"
    )
    psps_check.add_argument("--json", action="store_true")
    psps_check.set_defaults(func=_psps_check)
    recon.add_parser(sub)

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
    _dispatch(args)


def run(argv: list[str]) -> None:
    """As ``main``, with the process's logging left as it is: a command run inside a
    process that has its own (the test suite's, which runs commands without paying for an
    interpreter each time)."""
    _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> None:
    from connxt.secrets import KeyRingError, SecretUnreadable, UnknownKey, key_mismatch_message
    from connxt.settings import get_settings

    try:
        args.func(args)
    except (SecretUnreadable, UnknownKey):
        # A sealed value this key cannot open: say why and what to do, not a traceback.
        print(key_mismatch_message(get_settings()), file=sys.stderr)
        sys.exit(exits.KEY_MISMATCH)
    except KeyRingError as exc:
        print(f"connxt: {exc}", file=sys.stderr)
        sys.exit(exits.CONFIG)


if __name__ == "__main__":
    main()
