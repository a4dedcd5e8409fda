"""The real processes of the service, started as subprocesses for tests and benchmarks.

A ``Stack`` runs the sandbox, the API, workers and (optionally) beat with one shared
environment; each process logs to its own file, which a failing test can print.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psycopg

from connxt.settings import get_settings
from workers.lanes import default_lanes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # keep polling: the thing may not be up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


class Stack:
    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        api_port: int | None = None,
        sandbox_port: int | None = None,
    ):
        self.api_port = api_port or free_port()
        self.api_metrics_port = free_port()
        self.sandbox_port = sandbox_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = {
            **os.environ,
            **env,
            "CONNXT_PUBLIC_URL": self.api_url,
            "CONNXT_SANDBOX_URL": self.sandbox_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_sandbox(self) -> None:
        self._spawn("sandbox", "sandbox", "--port", str(self.sandbox_port))
        wait_until(
            lambda: httpx.get(f"{self.sandbox_url}/_control", timeout=1).status_code == 200,
            what="sandbox",
        )

    def start_api(self) -> None:
        self._spawn(
            "api", "api", "--port", str(self.api_port), "--metrics-port", str(self.api_metrics_port)
        )
        wait_until(
            lambda: httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200, what="api"
        )

    def start_console(self, env: dict[str, str] | None = None) -> str:
        """The operator console on a port of its own (``env``: settings for it alone); its
        URL."""
        port = free_port()
        saved, self.env = self.env, {**self.env, **(env or {})}
        try:
            self._spawn("console", "console", "--port", str(port))
        finally:
            self.env = saved
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, what="console"
        )
        return url

    def start_worker(
        self,
        name: str = "worker",
        concurrency: int = 4,
        queues: str | None = None,
        metrics_port: int | None = None,
    ):
        args = ["worker", "--concurrency", str(concurrency), "--loglevel", "INFO"]
        if queues:
            args += ["-Q", queues]
        if metrics_port:
            args += ["--metrics-port", str(metrics_port)]
        self._spawn(name, *args)
        lanes = 1 if queues else len(default_lanes(get_settings()))
        wait_until(
            lambda: self.log(name).count("ready.") >= lanes, timeout=45, what=f"{name} ready"
        )

    def start_beat(
        self, name: str = "beat", metrics_port: int | None = None, loglevel: str = "WARNING"
    ) -> None:
        schedule = self.log_dir / f"{name}-schedule"
        args = ["beat", "--loglevel", loglevel, "--schedule", str(schedule)]
        if metrics_port:
            args += ["--metrics-port", str(metrics_port)]
        self._spawn(name, *args)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)

    @contextmanager
    def held(self, *names: str, dsn: str) -> Iterator[None]:
        """The named processes stopped (SIGSTOP) for the block and resumed after, each
        stopped outside a transaction: a process stopped while holding a row lock would
        block the test's own statements on it. ``dsn``: their database, watched for that."""
        running = [self.procs[n] for n in names if n in self.procs]
        groups = [proc.pid for proc in running if proc.poll() is None]
        deadline = time.monotonic() + 10
        try:
            while True:
                for pid in groups:
                    os.killpg(pid, signal.SIGSTOP)
                if not _open_transactions(dsn) or time.monotonic() > deadline:
                    break
                for pid in groups:
                    os.killpg(pid, signal.SIGCONT)
                time.sleep(0.05)
            yield
        finally:
            for pid in groups:
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)


def _open_transactions(dsn: str) -> int:
    """Other sessions on this database inside a transaction (holding what it locked)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        ).fetchone()
    return row[0] if row else 0
