"""`make run` as a person runs it: in a terminal, then Ctrl-C.

The test runs the real script (`make run`, which is `bash deploy/run.sh`, as README offers
without make) on a pseudo-terminal in a session of its own, with ports, a database, a broker
prefix and a state directory (key, demo tenant) of its own, so neither the developer's
`.connxt/` nor the suite's stack is touched. Ctrl-C is typed into the terminal, which makes
the line discipline send SIGINT to the foreground process group, as a real terminal does.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from connxt.settings import get_settings
from tests.support.flows import V2, paymaxis_psp, transaction_body
from tests.support.stack import free_port
from tests.support.terminal import Terminal
from tests.support.testenv import ADMIN_DSN, DB_URL, REDIS_URL, RUN_DB
from workers.lanes import default_lanes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BANNER = "Ctrl-C stops everything"
STOP_BOUND_SECONDS = 10


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""  # gone meanwhile


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Run:
    """The environment of one `make run`: what a user's shell would have, nothing of the
    suite's own settings, and everything the run creates kept apart."""

    def __init__(self, tmp_path: Path, name: str):
        self.database = f"{RUN_DB}_{name}"
        self.prefix = f"{RUN_DB}_{name}:"
        self.state = tmp_path / "state"
        self.api_port, self.sandbox_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONNXT_")}
        self.env.update(
            CONNXT_DATABASE_URL=self.url(self.database),
            CONNXT_REDIS_URL=REDIS_URL,
            CONNXT_BROKER_KEY_PREFIX=self.prefix,
            CONNXT_STATE_DIR=str(self.state),
            CONNXT_API_PORT=str(self.api_port),
            CONNXT_SANDBOX_PORT=str(self.sandbox_port),
            # Every port of its own, so that another run (a parallel test) never collides.
            **{
                f"CONNXT_{name}_PORT": str(free_port())
                for name in ("CONSOLE", "FLOWER", "API_METRICS", "WORKER_METRICS", "BEAT_METRICS")
            },
            CONNXT_LOG_LEVEL="WARNING",
        )
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"

    @staticmethod
    def url(database: str) -> str:
        return f"{DB_URL.rsplit('/', 1)[0]}/{database}"

    def cleanup(self) -> None:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            names = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{self.database}%"]
            ).fetchall()
            for (name,) in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{self.prefix}*"):
            client.delete(key)


@pytest.fixture
def run(tmp_path, request):
    made = Run(tmp_path, request.node.name[5:25].replace("-", "_"))
    yield made
    made.cleanup()


def stop_with_ctrl_c(terminal: Terminal, run: Run, presses: int = 1) -> float:
    """Ctrl-C (pressed ``presses`` times, as an impatient person does); the seconds until
    nothing started from the terminal is left and both ports are free."""
    started = time.monotonic()
    for i in range(presses):
        if i:
            time.sleep(0.5)
        terminal.ctrl_c()
    while time.monotonic() - started < 30:
        if not terminal.processes() and not (
            listening(run.api_port) or listening(run.sandbox_port)
        ):
            break
        time.sleep(0.2)
    took = time.monotonic() - started
    left = terminal.processes()
    assert not left, f"still running {took:.1f} s after Ctrl-C:\n{terminal.signal_state()}"
    assert not listening(run.api_port) and not listening(run.sandbox_port)
    return took


def keep_busy(run: Run, terminal: Terminal) -> threading.Thread:
    """A payment in flight when Ctrl-C comes: the PSP takes 15 s to answer, so a worker is
    inside the PSP call and the API holds a request waiting for its outcome."""
    token = re.search(r"Demo token\s+(sec_\S+)", terminal.output)
    assert token, "the banner shows no demo token"
    headers = {"X-SECRET-TOKEN": token.group(1)}
    with httpx.Client(base_url=run.api, timeout=30) as client:
        flow_target, psp, _ = paymaxis_psp(client, run.sandbox, headers)
    httpx.put(f"{run.sandbox}/_control", json={"delay_ms": 15000}).raise_for_status()

    def pay() -> None:
        try:
            httpx.post(
                f"{run.api}{V2}/transactions",
                headers=headers,
                json=transaction_body(psp, flow_target),
                timeout=30,
            )
        except httpx.HTTPError:
            pass  # the API went away under it: what Ctrl-C is for

    payer = threading.Thread(target=pay, daemon=True)
    payer.start()
    time.sleep(1.5)
    return payer


def another_checkouts_demo_tenant(run: Run) -> None:
    """The shared database as another checkout left it: migrated, with the demo tenant
    sealed under that checkout's key (its generated key is "dev1" too, other bytes)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{run.database}"')
    env = {
        **run.env,
        "CONNXT_ENCRYPTION_KEYS": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    for args in (
        ["db", "upgrade"],
        ["tenants", "create", "--brand", "demo", "--environment", "sandbox"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "commands.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_second_checkout_runs_the_demo_and_ctrl_c_stops_everything_it_started(run):
    """One `make run` (each costs a whole service's start and its demo, so one run checks
    both): in a database another checkout sealed with its own key, it says so, names both
    ways out, runs the demo in a database of its own; then, with a payment in flight,
    Ctrl-C (twice, as an impatient person does) stops every process it started."""
    another_checkouts_demo_tenant(run)
    terminal = Terminal(["make", "run"], run.env, ROOT)
    try:
        terminal.wait_for(BANNER, timeout=300)
        said = terminal.output
        assert "Traceback" not in said and "InvalidTag" not in said
        assert f"The database '{run.database}' holds secrets sealed with another" in said
        # Both ways out, in that order, in one sentence.
        assert re.search(
            r"restore the key that sealed them \([^)]*\), or use another database with"
            r" CONNXT_DB_NAME\.",
            said,
        ), said[-2000:]
        assert f"this run uses the database {run.database}_" in said
        assert "Demo complete" in said
        assert listening(run.api_port) and listening(run.sandbox_port)
        commands = " | ".join(cmd for _, cmd in terminal.processes())
        for role in ("connxt api", "connxt sandbox", "connxt worker", "connxt beat"):
            assert role in commands, commands
        # The worker's lanes, forked from it, go by their lanes' names (top, ps -o comm).
        names = {process_name(pid) for pid, _ in terminal.processes()}
        assert {lane.name for lane in default_lanes(get_settings())} <= names, names
        keep_busy(run, terminal)
        took = stop_with_ctrl_c(terminal, run, presses=2)
        assert took <= STOP_BOUND_SECONDS, f"stopped after {took:.1f} s"
    except AssertionError:
        print(terminal.output[-5000:])
        raise
    finally:
        terminal.close()
