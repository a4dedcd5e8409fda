"""The long-running processes the `connxt` command starts: api, console, worker, beat,
flower, and the metrics listener each of them can serve.

Metrics listen on loopback unless ``--metrics-host`` says otherwise (a pod's address for
Prometheus in Kubernetes, a host's in a fleet): they describe the service, not for its
clients to read. The API serves them on a listener of their own (``--metrics-port``), off
its public port unless ``CONNXT_PUBLIC_METRICS`` is set.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from functools import partial
from pathlib import Path


def serve_metrics(
    host: str, port: int, *, multiprocess: bool, queue_depths: bool, differences: bool = False
) -> None:
    """``/metrics`` on ``host:port`` from a thread of this process: the process's own
    registry, or with ``multiprocess`` the sum of the processes that write to one directory
    (a worker's pool, the API's uvicorn workers). Call before anything imports
    prometheus_client, so that the directory is set for every metric made."""
    if multiprocess:
        share_metrics_directory()
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client import multiprocess as shared

    registry = REGISTRY
    if multiprocess:
        registry = CollectorRegistry()
        shared.MultiProcessCollector(registry)
    if queue_depths:
        from connectors.registry import queue_depths as read
        from connxt.metrics import QueueDepth
        from connxt.settings import get_settings

        registry.register(QueueDepth(read, get_settings().queue_depth_interval_seconds))
    if differences:
        # Settlement differences left open, from the database: reported by beat alone (one
        # per deployment), not by every process of the fleet.
        from connxt.metrics import OpenDifferences
        from storage.recon.differences import open_stats_now

        registry.register(OpenDifferences(open_stats_now))
    start_http_server(port, addr=host, registry=registry)


def run_api(args: argparse.Namespace) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api_gateway.drain import DrainingServer
    from connxt.settings import get_settings

    settings = get_settings()
    if args.metrics_port:
        serve_metrics(
            args.metrics_host, args.metrics_port, multiprocess=args.workers > 1, queue_depths=False
        )
    trusted = settings.trusted_proxies.strip()
    config = uvicorn.Config(
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
        # X-Forwarded-For only from the balancers named: from anyone else it changes nothing.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    if config.workers > 1:
        # Uvicorn (0.51 on) starts each worker's server itself, of its own class: these
        # close gracefully on SIGTERM, without DrainingServer's window of 503s from /readyz.
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        DrainingServer(config, settings.drain_seconds).run()


def run_console(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "console.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
    )


def run_worker(args: argparse.Namespace) -> None:
    """One Celery process for the queues given: a container or fleet host per lane, the
    platform restarting it (no supervisor inside)."""
    if args.metrics_port:  # before anything imports prometheus_client
        serve_metrics(args.metrics_host, args.metrics_port, multiprocess=True, queue_depths=True)
    from connectors.registry import lane_queues
    from connxt.settings import get_settings

    queues = args.queues or ",".join(lane_queues())
    lane = lane_for_process(queues)
    from connxt.secrets import key_ring
    from workers.app import celery_app

    key_ring()  # refuse to start without keys in production

    argv = ["worker", "-Q", queues, "--loglevel", args.loglevel]
    # Threads by default: a batch's items (and PSP calls) run on threads of their own
    # (workers.item_threads), so the pool only holds the messages being worked on.
    concurrency = args.concurrency or get_settings().worker_batches
    argv += ["--pool", args.pool or "threads", "--concurrency", str(concurrency)]
    # A node name of its own even where hosts share a name (network namespaces, a second
    # process on one host): RabbitMQ keeps each node's control queue exclusive to it.
    argv += ["--hostname", args.name or f"{lane.name if lane else 'worker'}-{os.getpid()}@%h"]
    celery_app.worker_main(argv)


def lane_for_process(queues: str):
    """A process started for one lane (``-Q notify``) takes that lane's threads and relay
    unless CONNXT_WORKER_THREADS / CONNXT_OUTBOX_RELAY say otherwise: the lane, or None."""
    from connxt.settings import get_settings
    from workers.lanes import lane_for

    lane = lane_for(queues, get_settings())
    if lane is not None:
        os.environ.setdefault("CONNXT_WORKER_THREADS", str(lane.threads))
        os.environ.setdefault("CONNXT_OUTBOX_RELAY", "true" if lane.relay else "false")
        get_settings.cache_clear()
    return lane


def supervise_lanes(args: argparse.Namespace) -> int:
    """One supervised Celery process per lane (or one for the queues given with -Q), each
    forked from this process once it has imported what they all run (commands.supervise);
    with ``--metrics-port``, one more child serves the lanes' metrics, so that this process
    never runs a thread of its own."""
    from commands.supervise import Child, supervise_all
    from connxt.settings import get_settings

    if args.metrics_port:  # before anything imports prometheus_client, here or in a lane
        share_metrics_directory()
    _import_what_lanes_run()
    from workers.lanes import Lane, default_lanes

    settings = get_settings()
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
    children = {}
    for lane in lanes:
        queues = ",".join(lane.queues)
        argv = ["worker", "-Q", queues, "--name", f"{lane.name}-{group}@%h", *common]
        children[lane.name] = Child(
            partial(_lane, argv),
            {
                "CONNXT_WORKER_THREADS": str(lane.threads),
                "CONNXT_OUTBOX_RELAY": "true" if lane.relay and settings.outbox_relay else "false",
            },
            name=lane.name,
        )
    if args.metrics_port:
        children["metrics"] = Child(
            partial(_serve_metrics_until_stopped, args.metrics_host, args.metrics_port),
            name="metrics",
        )
    return supervise_all(children)


def share_metrics_directory() -> None:
    """Processes that add their metrics up (a worker's lanes, the API's uvicorn workers)
    write them to one directory, which must be set before prometheus_client is imported."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="connxt-metrics-"))


def _import_what_lanes_run() -> None:
    """Everything a lane imports, imported once here for the lanes forked from this process
    to share: the app, its task modules, Celery's worker and its command line."""
    import importlib

    from workers.app import celery_app

    for module in ("celery.apps.worker", "celery.bin.celery", *celery_app.conf.include):
        importlib.import_module(module)


def _lane(argv: list[str]) -> None:
    """A lane's Celery process, as ``connxt worker ... --no-supervise`` would run it."""
    from commands.cli import main

    main(argv)


def _serve_metrics_until_stopped(host: str, port: int) -> None:
    serve_metrics(host, port, multiprocess=True, queue_depths=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_quietly)
    while True:
        signal.pause()


def _exit_quietly(_signum: int, _frame: object) -> None:
    sys.exit(0)


def run_beat(args: argparse.Namespace) -> None:
    if args.metrics_port:
        from celery.signals import before_task_publish

        from connxt.metrics import BEAT_SENT

        @before_task_publish.connect(weak=False)
        def _count(sender=None, **_kwargs) -> None:
            BEAT_SENT.labels(str(sender)).inc()

        serve_metrics(
            args.metrics_host,
            args.metrics_port,
            multiprocess=False,
            queue_depths=True,
            differences=True,
        )
    from connxt import tracing
    from workers.app import celery_app

    if tracing.setup("connxt-beat"):  # with OTEL_EXPORTER_OTLP_ENDPOINT only
        tracing.instrument_celery()

    argv = ["beat", "--loglevel", args.loglevel]
    if args.schedule:
        schedule = Path(args.schedule).expanduser().resolve()
        try:
            schedule.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            sys.exit(f"connxt beat: cannot keep the schedule at {schedule}: {exc.strerror}")
        argv += ["--schedule", str(schedule)]
    else:
        # Nothing to keep on disk: every sweep books its own slot in Redis and its due rows
        # in PostgreSQL (workers/sweeps.py), so a beat that starts afresh, on any host and
        # from any directory, neither skips nor repeats work.
        argv += ["--scheduler", "celery.beat:Scheduler"]
    celery_app.start(argv)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_flower(args: argparse.Namespace) -> None:
    try:
        import flower  # noqa: F401  (Celery finds its command through the import)
    except ImportError:
        sys.exit("Flower is not installed: pip install 'connxt[ops]'")
    # Flower shows every task's arguments and can revoke tasks and shut workers down: beyond
    # loopback only behind its own authentication.
    auth_settings = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER")
    authenticated = any(os.environ.get(name) for name in auth_settings)
    if args.host not in LOOPBACK and not (args.basic_auth or authenticated):
        sys.exit(
            f"connxt flower: refusing to listen on {args.host} without authentication: "
            "set FLOWER_BASIC_AUTH=user:password (or --basic-auth), or listen on 127.0.0.1"
        )
    from workers.app import celery_app

    argv = ["flower", f"--address={args.host}", f"--port={args.port}"]
    if args.basic_auth:
        argv.append(f"--basic-auth={args.basic_auth}")
    if args.url_prefix:
        argv.append(f"--url_prefix={args.url_prefix}")
    celery_app.start(argv)
