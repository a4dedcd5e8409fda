"""Environment, private database and the running stack for one benchmark run.

Like ``tests/conftest.py``: the CONNXT_* environment is fixed at import, before any project
module reads its settings, so import this module before anything from the project.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

RUN_DB = f"connxt_bench_{secrets.token_hex(4)}"
ADMIN_DSN = os.environ.get(
    "CONNXT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_URL = (
    ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + RUN_DB
)
REDIS_URL = os.environ.get("CONNXT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")

os.environ.update(
    CONNXT_ENV="development",
    CONNXT_DATABASE_URL=DB_URL,
    CONNXT_REDIS_URL=REDIS_URL,
    CONNXT_ENCRYPTION_KEYS="b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    CONNXT_LOG_LEVEL="WARNING",
    CONNXT_LOCAL_KEY_FILE=os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{RUN_DB}.key"),
)

API_KEY = f"pmx_bench_{secrets.token_hex(4)}"
SIGNING_KEY = f"whk_bench_{secrets.token_hex(16)}"


@dataclass
class Env:
    """Everything a scenario needs: the stack, a tenant's headers, the PSP and its target."""

    stack: Any
    headers: dict[str, str]
    flow_target: dict[str, Any]
    psp: dict[str, Any]
    signing_key: str = SIGNING_KEY
    api_key: str = API_KEY
    notes: list[str] = field(default_factory=list)


def create_database() -> None:
    from connxt.logging import configure_logging
    from connxt.settings import get_settings

    configure_logging(get_settings())  # the bench process logs as the service does
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{RUN_DB}"')
    from connectors.catalog import target_spec
    from connectors.registry import all_connectors
    from storage.catalog import sync_catalog
    from storage.db import session_scope
    from storage.migrate import upgrade

    upgrade(DB_URL)
    with session_scope() as session:
        sync_catalog(session, [target_spec(c) for c in all_connectors().values()])


def drop_database() -> None:
    try:
        from storage.db import _session_factory

        _session_factory().kw["bind"].dispose()  # get_engine() would build a new engine
    except Exception:  # noqa: BLE001 (the forced drop below is what matters)
        pass
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')
    Path(os.environ["CONNXT_LOCAL_KEY_FILE"]).unlink(missing_ok=True)


def flush_redis() -> None:
    from connxt.redis import get_redis

    get_redis().flushdb()


def new_tenant() -> dict[str, str]:
    from connxt.secrets import key_ring
    from storage.db import session_scope
    from storage.tenants import create_tenant

    with session_scope() as session:
        issued = create_tenant(session, key_ring(), "bench", "load")
    return {"X-SECRET-TOKEN": issued.token}


def start_stack(worker_concurrency: int = 4):
    from tests.support.stack import Stack

    log_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DB}-logs-"))
    stack = Stack({}, log_dir)
    stack.start_sandbox()
    stack.start_api()
    stack.start_worker(concurrency=worker_concurrency)
    return stack


def prepare(stack) -> Env:
    """A tenant, a Paymaxis PSP with a webhook signing key, the key registered in the sandbox."""
    from tests.support.flows import create_psp, target

    headers = new_tenant()
    answer = httpx.put(
        f"{stack.sandbox_url}/_control/accounts",
        json={"apiKey": API_KEY, "webhookSigningKey": SIGNING_KEY},
        timeout=10,
    )
    answer.raise_for_status()
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        flow_target = target(client, headers, "Paymaxis")
        credential = {"apiKey": API_KEY, "webhookSigningKey": SIGNING_KEY}
        psp = create_psp(client, headers, flow_target, credential, name="Bench")
    return Env(stack, headers, flow_target, psp)


def db_statuses(txn_ids: list[str]) -> dict[str, int]:
    """How many of ``txn_ids`` are in each status, read from PostgreSQL directly."""
    from sqlalchemy import text

    from storage.db import session_scope

    with session_scope() as session:
        rows = session.execute(
            text("SELECT status, count(*) FROM transactions WHERE id = ANY(:ids) GROUP BY status"),
            {"ids": txn_ids},
        ).all()
    return {status: count for status, count in rows}


def success_times(txn_ids: list[str]) -> list[float]:
    """Epoch seconds at which each of ``txn_ids`` recorded its move to SUCCESS."""
    from sqlalchemy import text

    from storage.db import session_scope

    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT extract(epoch FROM min(created_at)) FROM transaction_events"
                " WHERE txn_id = ANY(:ids) AND to_status = 'SUCCESS' GROUP BY txn_id"
            ),
            {"ids": txn_ids},
        ).all()
    return [float(r[0]) for r in rows]


_TASK_DONE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([0-9.]+)s")
_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|Traceback|Exception)\b")


def log_digest(stack) -> dict[str, Any]:
    """Per task: count and run time from the worker log; per process: lines that look bad."""
    durations: dict[str, list[float]] = {}
    for name, seconds in _TASK_DONE.findall(stack.log("worker")):
        durations.setdefault(name, []).append(float(seconds) * 1000)
    tasks = {}
    for name, ms in sorted(durations.items()):
        ms.sort()
        tasks[name] = {
            "n": len(ms),
            "p50_ms": round(ms[len(ms) // 2], 1),
            "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)], 1),
            "mean_ms": round(sum(ms) / len(ms), 1),
        }
    problems = {}
    for name in ("api", "worker", "sandbox"):
        bad = [line[:300] for line in stack.log(name).splitlines() if _PROBLEM.search(line)]
        problems[name] = {"count": len(bad), "first": bad[:5]}
    return {"worker_tasks": tasks, "log_problems": problems}
