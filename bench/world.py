"""The run's fixed world (a tenant, a Paymaxis and a Sticpay PSP account) and, per phase, a
fresh copy of it: its own database cloned from a template, its own broker key prefix.

Set-up goes through the service's own commands and HTTP API (``connxt db upgrade``,
``connxt catalog sync``, ``connxt tenants create|notification-url``, Step 2), so the bench keeps
working while the internals change. Cloning the template (``CREATE DATABASE … TEMPLATE``)
gives every phase the same starting state in well under a second, with counters at zero.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import redis

from bench import pgwatch
from bench.stack import Stack
from tests.support.flows import create_psp, target

RUN_ID = secrets.token_hex(4)
ADMIN_DSN = os.environ.get(
    "CONNXT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Not db 10: the benchmark this one replaces flushes db 10, and other branches still run it.
# Keys are prefixed per phase in any case, so runs on other branches never collide.
REDIS_URL = os.environ.get("CONNXT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
TEMPLATE_DB = f"connxt_bench_{RUN_ID}"

# Every process of the run shares one key ring, so credentials sealed in the template open
# in every clone.
RUN_ENV = {
    "CONNXT_REDIS_URL": REDIS_URL,
    "CONNXT_ENCRYPTION_KEYS": "b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
}


def dsn(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def db_env(database: str) -> dict[str, str]:
    return {
        "CONNXT_DATABASE_URL": dsn(database).replace("postgresql://", "postgresql+psycopg://"),
        "CONNXT_BROKER_KEY_PREFIX": f"{database}:",
    }


@dataclass
class Psp:
    target: dict[str, Any]
    psp: dict[str, Any]
    credential: dict[str, str]

    @property
    def id(self) -> str:
        return self.psp["id"]

    def action_id(self, name: str) -> str:
        return next(a["id"] for a in self.target["actions"] if a["name"] == name)


@dataclass
class Scene:
    """One phase's private copy of the world: database, broker prefix, environment."""

    db: str
    env: dict[str, str]

    @property
    def dsn(self) -> str:
        return dsn(self.db)


@dataclass
class World:
    stack: Stack
    tenant: dict[str, str]  # brandId, environmentId, token, notificationSecret
    paymaxis: Psp
    sticpay: Psp
    scenes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-SECRET-TOKEN": self.tenant["token"]}

    def scene(self, name: str, extra_env: dict[str, str] | None = None) -> Scene:
        db = f"{TEMPLATE_DB}_{len(self.scenes)}_{name}"[:63]
        with pgwatch.admin(ADMIN_DSN) as conn:
            conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{TEMPLATE_DB}"')
        self.scenes.append(db)
        self.stack.phase = name
        return Scene(db, {**db_env(db), **(extra_env or {})})

    def drop_scene(self, scene: Scene) -> None:
        drop_database(scene.db)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{scene.db}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])

    def reset_sandbox(self, **control: Any) -> None:
        """Forget payments and faults (accounts and the merchant secret stay), then set
        ``control`` (``delay_ms``, ``psp``, ...)."""
        url = self.stack.sandbox_url
        httpx.post(f"{url}/_control/reset", timeout=30).raise_for_status()
        if control:
            httpx.put(f"{url}/_control", json=control, timeout=10).raise_for_status()


def drop_database(name: str) -> None:
    with pgwatch.admin(ADMIN_DSN) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _connxt(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "commands.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"connxt {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    raise RuntimeError(f"no JSON line in: {text[-500:]}")


def provision(stack: Stack) -> World:
    """The template database and the sandbox accounts, as a new user would set them up."""
    with pgwatch.admin(ADMIN_DSN) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    env = {**stack.base_env, **db_env(TEMPLATE_DB)}
    _connxt(env, "db", "upgrade")
    _connxt(env, "catalog", "sync")
    tenant = _last_json(
        _connxt(env, "tenants", "create", "--brand", "bench", "--environment", "load", "--json")
    )
    receiver = f"{stack.sandbox_url}/merchant/notifications"
    _connxt(
        env,
        "tenants",
        "notification-url",
        "--brand",
        "bench",
        "--environment",
        "load",
        "--url",
        receiver,
    )

    paymaxis_cred = {
        "apiKey": f"pmx_bench_{RUN_ID}",
        "webhookSigningKey": secrets.token_hex(16),
    }
    sticpay_cred = {"merchantEmail": f"bench-{RUN_ID}@example.com", "apiKey": secrets.token_hex(8)}
    sandbox = stack.sandbox_url
    for account in (paymaxis_cred, sticpay_cred):
        httpx.put(f"{sandbox}/_control/accounts", json=account, timeout=10).raise_for_status()
    # The merchant receiver verifies our notifications with the environment's secret.
    merchant = {"secret": tenant["notificationSecret"]}
    httpx.put(f"{sandbox}/_control/merchant", json=merchant, timeout=10).raise_for_status()

    headers = {"X-SECRET-TOKEN": tenant["token"]}
    stack.start_api(db_env(TEMPLATE_DB))
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30) as client:
            psps = {}
            for name, credential in (("Paymaxis", paymaxis_cred), ("Sticpay", sticpay_cred)):
                flow_target = target(client, headers, name)
                psp = create_psp(client, headers, flow_target, credential, name=f"Bench {name}")
                psps[name] = Psp(flow_target, psp, credential)
    finally:
        stack.stop("api")
    # A template cannot be cloned while anyone is connected to it.
    pgwatch.wait_no_backends(ADMIN_DSN, TEMPLATE_DB)
    return World(stack, tenant, psps["Paymaxis"], psps["Sticpay"])


def teardown(world: World | None) -> None:
    for name in [*(world.scenes if world else []), TEMPLATE_DB]:
        try:
            drop_database(name)
        except psycopg.Error as exc:
            print(f"[bench] could not drop {name}: {exc}", file=sys.stderr)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{TEMPLATE_DB}*", count=1000))
    if keys:
        client.delete(*keys)
