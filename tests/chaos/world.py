"""Chaos tests' private worlds of real processes, and the figures each fault produced.

A ``World`` is a whole Connxt installation of its own: a fresh database (on the shared
PostgreSQL, or on a ``PrivatePostgres`` when the test restarts the server), a
``PrivateRedis`` as lock store (and broker), and a ``Stack`` (sandbox, API, worker, beat)
whose environment points at them. The broker is that Redis, or with
``CONNXT_TEST_BROKER=rabbitmq`` a virtual host of its own on the shared RabbitMQ, or
(``broker="private-rabbitmq"``) a ``PrivateRabbit`` node the test may restart. Nothing is
shared with the rest of the suite or with other test runs on the machine: their workers
never consume our tasks, and stopping our servers or killing our workers disturbs nobody
else. The database is prepared with what
``connxt db upgrade``, ``catalog sync``, ``tenants create`` and ``tenants notification-url`` run,
on an engine of the world's own (this process's shared engine is bound to the suite's
test database).

``record_result`` merges one entry per fault into ``tests/chaos/results.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support import rabbitmq
from tests.support.flows import V2, open_paymaxis_account, reference_payload, transaction_body
from tests.support.rabbitmq import PrivateRabbit
from tests.support.servers import PrivatePostgres, PrivateRedis
from tests.support.stack import Stack

RESULTS = Path(__file__).with_name("results.json")

# Settings of every chaos world on top of the suite's (tests/conftest.py). The lock TTL is
# shortened like the suite's other healing intervals: a lock left behind by a killed
# worker then frees in seconds, not half a minute. It stays above the longest PSP call a
# test provokes (two calls of at most ~3 s each against the slowed sandbox).
# INFO logs let a test see where a worker is (each PSP round trip is logged) and explain a
# failure afterwards.
CHAOS_ENV = {"CONNXT_LOCK_TTL_SECONDS": "10", "CONNXT_LOG_LEVEL": "INFO"}


def record_result(fault: str, *, to: Path = RESULTS, **figures: Any) -> None:
    """Merge one fault's figures into results.json (one entry per fault, latest run wins);
    ``to``: another suite's file (tests/fleet/results.json)."""
    try:
        current = json.loads(to.read_text())
    except (FileNotFoundError, ValueError):
        current = {}
    current[fault] = {**figures, "recordedAt": datetime.now(UTC).isoformat(timespec="seconds")}
    to.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def signed_webhook(signing_key: str, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A Paymaxis notification as the PSP signs it: HMAC-SHA256 hex of the raw body."""
    body = json.dumps(payment).encode()
    signature = hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Signature": signature, "Content-Type": "application/json"}


def completed(payment_id: str, txn_id: str, amount: int = 200) -> dict[str, Any]:
    return {
        "id": payment_id,
        "referenceId": txn_id,
        "state": "COMPLETED",
        "amount": amount,
        "currency": "USD",
        "paymentType": "DEPOSIT",
    }


def is_envelope_error(response: httpx.Response) -> bool:
    """A refusal in the reference's envelope: {timestamp, code, message, errors}."""
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and str(body.get("code")) == str(response.status_code)
        and "timestamp" in body
        and "message" in body
        and isinstance(body.get("errors"), list)
    )


@dataclass
class World:
    name: str
    stack: Stack
    db_url: str
    redis: PrivateRedis
    pg: PrivatePostgres | None = None
    admin_dsn: str = ""
    broker: str = "redis"  # "redis", "rabbitmq" (a vhost on the shared server), "private-rabbitmq"
    rabbit: PrivateRabbit | None = None
    headers: dict[str, str] = field(default_factory=dict)
    flow_target: dict[str, Any] = field(default_factory=dict)
    psp: dict[str, Any] = field(default_factory=dict)
    credential: dict[str, str] = field(default_factory=dict)
    tenant: dict[str, str] = field(default_factory=dict)
    worker_generation: int = 0
    worker_concurrency: int = 4  # messages each lane works on at once

    # -- processes ----------------------------------------------------------------------

    @property
    def worker_name(self) -> str:
        return f"worker{self.worker_generation}"

    def start_worker(self) -> str:
        """A new worker under a new name (each name has its own log, so `ready` is its own)."""
        self.worker_generation += 1
        self.stack.start_worker(name=self.worker_name, concurrency=self.worker_concurrency)
        return self.worker_name

    def kill_worker(self) -> None:
        """kill -9 the whole worker: the Celery parent and its prefork children."""
        self.stack.kill(self.worker_name)

    # -- driving ------------------------------------------------------------------------

    def client(self, timeout: float = 15) -> httpx.Client:
        return httpx.Client(base_url=self.stack.api_url, timeout=timeout)

    def sandbox(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.stack.sandbox_url}{path}", timeout=10, **kwargs)

    def control(self, **settings: Any) -> None:
        answer = self.sandbox("PUT", "/_control", json=settings)
        assert answer.status_code == 200, answer.text

    def reset_sandbox(self) -> None:
        self.sandbox("POST", "/_control/reset")

    def deposit_body(self, order_id: str | None = None) -> dict[str, Any]:
        return transaction_body(
            self.psp, self.flow_target, payload=reference_payload(order_id or secrets.token_hex(6))
        )

    def post_deposit(
        self, client: httpx.Client, respond_async: bool = True, timeout: float | None = None
    ) -> httpx.Response:
        headers = dict(self.headers)
        if respond_async:
            headers["Prefer"] = "respond-async"
        kwargs = {"timeout": timeout} if timeout else {}
        return client.post(
            f"{V2}/transactions", headers=headers, json=self.deposit_body(), **kwargs
        )

    def payments(self, txn_id: str | None = None) -> list[dict[str, Any]]:
        params = {"referenceId": txn_id} if txn_id else None
        return self.sandbox("GET", "/_payments", params=params).json()["payments"]

    def payments_by_reference(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for payment in self.payments():
            out.setdefault(payment["referenceId"], []).append(payment)
        return out

    def merchant_notifications(self) -> list[dict[str, Any]]:
        return self.sandbox("GET", "/merchant/notifications").json()["notifications"]

    def webhook_url(self) -> str:
        return f"{self.stack.api_url}{V2}/external/webhooks/{self.psp['id']}"

    def signed_completion(self, txn_id: str, payment_id: str) -> tuple[bytes, dict[str, str]]:
        return signed_webhook(self.credential["webhookSigningKey"], completed(payment_id, txn_id))

    def unacked_tasks(self) -> list[tuple[str, str]]:
        """(task name, kwargs repr) of the messages reserved by a worker and not yet acked:
        Celery's Redis transport keeps them in the ``unacked`` hash until the visibility
        timeout hands them back (so after a kill -9 they come back late, not never)."""
        import redis

        client = redis.Redis.from_url(self.redis.url(0), socket_timeout=5)
        found = []
        try:
            prefix = self.stack.env.get("CONNXT_BROKER_KEY_PREFIX", "")
            for raw in client.hvals(f"{prefix}unacked"):
                try:
                    headers = json.loads(raw)[0].get("headers", {})
                except (ValueError, IndexError, AttributeError):
                    continue
                found.append((str(headers.get("task")), str(headers.get("kwargsrepr"))))
        finally:
            client.close()
        return found

    # -- reading the record of truth ---------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.db_url.replace("postgresql+psycopg://", "postgresql://")

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.dsn, connect_timeout=5, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def statuses(self, txn_ids: list[str]) -> dict[str, str]:
        rows = self.query("SELECT id, status FROM transactions WHERE id = ANY(%s)", list(txn_ids))
        return dict(rows)

    def transitions(self, txn_ids: list[str]) -> dict[str, list[tuple[str | None, str]]]:
        rows = self.query(
            "SELECT txn_id, from_status, to_status FROM transaction_events "
            "WHERE txn_id = ANY(%s) ORDER BY id",
            list(txn_ids),
        )
        out: dict[str, list[tuple[str | None, str]]] = {t: [] for t in txn_ids}
        for txn_id, from_status, to_status in rows:
            out[txn_id].append((from_status, to_status))
        return out

    def notification_rows(self, txn_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
        rows = self.query(
            "SELECT txn_id, id, status FROM notifications WHERE txn_id = ANY(%s)", list(txn_ids)
        )
        out: dict[str, list[tuple[str, str]]] = {t: [] for t in txn_ids}
        for txn_id, notification_id, status in rows:
            out[txn_id].append((notification_id, status))
        return out

    def wait_statuses(
        self, txn_ids: list[str], wanted: set[str], timeout: float, what: str = "statuses"
    ) -> dict[str, str]:
        """Poll until every transaction is in ``wanted``; returns the last statuses anyway."""
        deadline = time.monotonic() + timeout
        current: dict[str, str] = {}
        while time.monotonic() < deadline:
            current = self.statuses(txn_ids)
            if len(current) == len(txn_ids) and all(s in wanted for s in current.values()):
                return current
            time.sleep(0.3)
        return current

    def log_lines(self, name: str, *needles: str) -> list[str]:
        """Lines of a process's log that contain every one of ``needles``."""
        return [
            line
            for line in self.stack.log(name).splitlines()
            if all(needle in line for needle in needles)
        ]

    def logs(self, *names: str, tail: int = 60) -> str:
        parts = [f"logs in {self.stack.log_dir}"]
        for name in names or tuple(self.stack.procs) + ("sandbox",):
            lines = self.stack.log(name).splitlines()[-tail:]
            parts.append(f"--- {name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)


def _create_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(admin_dsn: str, name: str) -> None:
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # a private server being destroyed anyway, or already gone


def _prepare_database(db_url: str, world: World) -> None:
    """What `connxt db upgrade`, `catalog sync`, `tenants create` and `tenants notification-url` do,
    run here on an engine of the world's own (one process start instead of four: under load
    each interpreter start costs seconds)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from connectors.catalog import target_spec
    from connectors.registry import all_connectors
    from connxt.secrets import key_ring
    from storage.catalog import sync_catalog
    from storage.migrate import upgrade
    from storage.models import Environment
    from storage.tenants import create_tenant

    upgrade(db_url)
    engine = create_engine(db_url, pool_size=1)
    try:
        with Session(engine) as session, session.begin():
            sync_catalog(session, [target_spec(c) for c in all_connectors().values()])
        with Session(engine) as session, session.begin():
            issued = create_tenant(session, key_ring(), "shop", "live")
            # A merchant whose notifications go to the sandbox's verifying receiver.
            session.get(
                Environment, issued.environment_id
            ).notification_url = f"{world.stack.sandbox_url}/merchant/notifications"
    finally:
        engine.dispose()
    world.tenant = {
        "brandId": issued.brand_id,
        "environmentId": issued.environment_id,
        "token": issued.token,
        "notificationSecret": issued.notification_secret,
    }


def _start_processes(world: World) -> None:
    """Sandbox, API, first worker and beat, started side by side (each waits for itself)."""
    starts = [world.stack.start_sandbox, world.stack.start_api, world.start_worker]
    errors: list[BaseException] = []

    def run(start) -> None:
        try:
            start()
        except BaseException as exc:  # surfaced below, after every start has finished
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(start,)) for start in starts]
    for thread in threads:
        thread.start()
    world.stack.start_beat()
    for thread in threads:
        thread.join(90)
    if errors:
        raise errors[0]


def _broker_env(broker: str, vhost: str, redis_server: PrivateRedis, rabbit) -> dict[str, str]:
    if broker == "redis":
        return {"CONNXT_BROKER_URL": ""}  # unset: the world's Redis, whatever the suite uses
    if broker == "rabbitmq":
        return {"CONNXT_BROKER_URL": rabbitmq.create_vhost(vhost)}
    return {"CONNXT_BROKER_URL": rabbit.url}


def build_world(
    name: str,
    log_dir: Path,
    private_postgres: bool = False,
    broker: str | None = None,
    extra_env: dict[str, str] | None = None,
    worker_concurrency: int = 4,
) -> World:
    """``broker``: None takes the suite's (CONNXT_TEST_BROKER)."""
    from tests.support.testenv import ADMIN_DSN, BROKER

    broker = broker or BROKER
    redis_server = PrivateRedis(log_dir=log_dir)
    redis_server.start()
    rabbit = None
    if broker == "private-rabbitmq":
        rabbit = PrivateRabbit(log_dir=log_dir)
        rabbit.start()
    pg = None
    if private_postgres:
        pg = PrivatePostgres()
        pg.start()
        admin_dsn = pg.admin_dsn
    else:
        admin_dsn = ADMIN_DSN
    db_name = f"connxt_chaos_{name}_{secrets.token_hex(3)}"
    _create_database(admin_dsn, db_name)
    server = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    db_url = f"{server}/{db_name}"
    env = {
        **CHAOS_ENV,
        "CONNXT_DATABASE_URL": db_url,
        "CONNXT_REDIS_URL": redis_server.url(0),
        "CONNXT_BROKER_KEY_PREFIX": f"{db_name}:",
        "CONNXT_LOCAL_KEY_FILE": str(log_dir / "local.key"),
        **(extra_env or {}),
    }
    world = World(name, Stack(env, log_dir), db_url, redis_server, pg, admin_dsn, broker, rabbit)
    world.worker_concurrency = worker_concurrency
    try:
        env.update(_broker_env(broker, db_name, redis_server, rabbit))
        world.stack.env.update(env)
        _prepare_database(db_url, world)
        _start_processes(world)
        open_paymaxis_account(world)
    except BaseException:
        destroy_world(world)
        raise
    return world


def destroy_world(world: World) -> None:
    # kill -9 every process group at once: the world's data is dropped right after, and a
    # warm shutdown of each process in turn costs seconds apiece.
    for name in list(world.stack.procs):
        proc = world.stack.procs[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for proc in world.stack.procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    world.stack.procs.clear()
    db_name = world.db_url.rsplit("/", 1)[1]
    _drop_database(world.admin_dsn, db_name)
    if world.broker == "rabbitmq":
        rabbitmq.delete_vhost(db_name)
    if world.rabbit is not None:
        world.rabbit.destroy()
    world.redis.destroy()
    if world.pg is not None:
        world.pg.destroy()
