"""Test set-up shared by every suite: a private PostgreSQL database and Redis database.

The environment is fixed here, before any project module reads its settings: a database
named for this run (migrated with Alembic, dropped at the end), a Redis database of its
own, and a fresh encryption key ring.
"""

from __future__ import annotations

import psycopg
import pytest

# The environment is fixed in a module of its own, imported once under one name whatever
# imports it (a second import of this conftest would pick another database name).
from tests.support.testenv import (  # the import sets the environment
    ADMIN_DSN,
    API_PORT,
    BROKER,
    DB_URL,
    RUN_DB,
    SANDBOX_PORT,
)

# Tables emptied between tests; the catalog stays (it is synced once per run).
TENANT_TABLES = [
    "recon_resolutions",
    "recon_adjustments",
    "recon_txn_results",
    "recon_lines",
    "recon_differences",
    "recon_days",
    "recon_runs",
    "notification_attempts",
    "notifications",
    "transaction_reviews",
    "idempotency_keys",
    "inbox",
    "outbox",
    "transaction_events",
    "transactions",
    "psp_operations",
    "psps",
    "api_tokens",
    "environments",
    "brands",
]


@pytest.fixture(scope="session")
def database():
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{RUN_DB}"')
    from connectors.catalog import target_spec
    from connectors.registry import all_connectors
    from storage.catalog import sync_catalog
    from storage.db import get_engine, session_scope
    from storage.migrate import upgrade

    upgrade(DB_URL)
    with session_scope() as session:
        sync_catalog(session, [target_spec(c) for c in all_connectors().values()])
    yield DB_URL
    get_engine().dispose()
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def broker_vhost():
    """On RabbitMQ the run's virtual host (tests.support.testenv) goes when the run ends."""
    yield
    if BROKER == "rabbitmq":
        from tests.support.rabbitmq import delete_vhost

        delete_vhost(RUN_DB)


# The tiers whose files take longest come first. deploy/test.sh hands whole files to its
# pytest-xdist processes in collection order (--no-loadscope-reorder: xdist's own order puts
# the files with most tests first, which left a half-minute end-to-end file for the end of
# the run while the other processes idled), and the many short unit files even out the end.
SLOW_TIERS_FIRST = ("e2e", "console", "integration", "chaos", "fleet", "workers", "unit")


def _tier(item) -> int:
    parts = item.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
    return SLOW_TIERS_FIRST.index(tier) if tier in SLOW_TIERS_FIRST else len(SLOW_TIERS_FIRST)


def pytest_collection_modifyitems(items):
    """Every test that runs on the shared stack's worker is a ``broker`` test: .ci/run runs
    them a second time with CONNXT_TEST_BROKER=rabbitmq (``-m broker``). Except those marked
    ``any_broker``, whose worker work is set-up for what they check (the console's pages,
    tokens, the API's shapes): the flows that set them up run on both brokers already.
    The slow tiers are moved first (``SLOW_TIERS_FIRST``; a stable sort: each file's tests
    stay together and in order)."""
    items.sort(key=_tier)
    for item in items:
        uses_stack = "stack" in getattr(item, "fixturenames", ())
        if uses_stack and item.get_closest_marker("any_broker") is None:
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def redis_client():
    from connxt.redis import get_redis

    # Not flushed: other runs may share this Redis; this run's broker keys carry its prefix.
    client = get_redis()
    yield client
    for key in client.scan_iter(f"{RUN_DB}:*"):
        client.delete(key)


@pytest.fixture
def db(database, redis_client):
    """A clean slate for one test: tenant tables emptied afterwards."""
    yield database
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError, OperationalError

    from storage.db import get_engine

    # DELETE, not TRUNCATE: running workers and beat hold row locks, and TRUNCATE's table
    # lock would deadlock with their sweeps. Retry the rare row-lock deadlock.
    for attempt in range(5):
        try:
            with get_engine().begin() as conn:
                for table in TENANT_TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))
            break
        except (OperationalError, IntegrityError):
            if attempt == 4:
                raise
    # Redis is not flushed here: a running worker's queue bindings live in it.


@pytest.fixture
def client(db):
    from fastapi.testclient import TestClient

    from api_gateway.app import create_app
    from tests.support.contract import checked

    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield checked(test_client)


@pytest.fixture
def make_tenant(db):
    """Factory: a tenant and the headers that authenticate as it."""
    from connxt.secrets import key_ring
    from storage.db import session_scope
    from storage.tenants import create_tenant

    def make(brand: str = "acme", environment: str = "test"):
        with session_scope() as session:
            issued = create_tenant(session, key_ring(), brand, environment)
        return issued, {"X-SECRET-TOKEN": issued.token}

    return make


@pytest.fixture
def tenant(make_tenant):
    return make_tenant()


# The session's ``stack``, while it runs (for ``background_held``).
SESSION_STACK = None


@pytest.fixture(scope="session")
def stack(database, redis_client, tmp_path_factory):
    """Sandbox, API, a worker and beat as real processes sharing this run's database; the
    api, worker and beat serve their metrics (``api_metrics_port``, ``worker_metrics_port``,
    ``beat_metrics_port``)."""
    from tests.support.stack import Stack, free_port

    global SESSION_STACK
    running = Stack({}, tmp_path_factory.mktemp("stack-logs"), API_PORT, SANDBOX_PORT)
    SESSION_STACK = running
    running.worker_metrics_port, running.beat_metrics_port = free_port(), free_port()
    try:
        running.start_sandbox()
        running.start_api()
        running.start_worker(metrics_port=running.worker_metrics_port)
        running.start_beat(metrics_port=running.beat_metrics_port)
        yield running
    finally:
        SESSION_STACK = None
        running.stop()


@pytest.fixture
def background_held(request, database):
    """The session's worker and beat held still for one test that does not use them, if a
    test before it started them (``stack`` lives for the whole run): a test that reads the
    outbox or runs the sweeps itself then sees only its own doing, whatever ran before it
    in this process."""
    if SESSION_STACK is None or "stack" in request.fixturenames:
        yield
        return
    from storage.aio import libpq_url

    with SESSION_STACK.held("worker", "beat", dsn=libpq_url(DB_URL)):
        yield


@pytest.fixture
def api(stack, db):
    """An HTTP client on the running API; the sandbox PSPs start each test without faults."""
    import httpx

    httpx.post(f"{stack.sandbox_url}/_control/reset")
    from tests.support.contract import checked

    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield checked(client)
    httpx.post(f"{stack.sandbox_url}/_control/reset")
