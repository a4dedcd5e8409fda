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
    """A port free now, for a server started at once (another process may take it later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Bound, never listening, for the life of this process (see ``reserved_port``).
_reservations: list[socket.socket] = []


def reserved_port() -> int:
    """A port no other process is given while this one lives, for a server started much
    later (the shared stack's, fixed when the run begins): the reservation stays bound
    with SO_REUSEADDR and never listens, so the kernel hands the port to no one else's
    bind or connect, while a server that sets SO_REUSEADDR too (uvicorn, asyncio) may still
    bind it and listen. A port from ``free_port`` was taken in that gap once: another test
    process's API answered the shared stack's health check, and every token was refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    _reservations.append(sock)
    return sock.getsockname()[1]


class Exited(RuntimeError):
    """The process waited for has ended: waiting longer cannot help."""


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exited:
            raise
        except Exception as exc:  # keep polling: the thing may not be up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


def listens(group: int, port: int) -> bool:
    """Whether a process of process group ``group`` holds the socket listening on ``port``
    (Linux's /proc): whoever answers on a port need not be the server started for it."""
    sockets = _listening_sockets(port)
    for pid in _group_members(group) if sockets else ():
        with suppress(OSError):  # the process, or the descriptor, went meanwhile
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                        return True
    return False


def _listening_sockets(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as rows:
            next(rows)  # the heading
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    found.add(f"socket:[{inode}]")
    return found


def _group_members(group: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                # After the command's closing parenthesis: state, ppid, pgrp, ...
                if int(stat.read().rsplit(")", 1)[1].split()[2]) == group:
                    members.append(int(entry))
    return members


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
        self._wait_serving("sandbox", self.sandbox_port, f"{self.sandbox_url}/_control")

    def start_api(self) -> None:
        self._spawn(
            "api", "api", "--port", str(self.api_port), "--metrics-port", str(self.api_metrics_port)
        )
        self._wait_serving("api", self.api_port, f"{self.api_url}/healthz")

    def _wait_serving(self, name: str, port: int, health_url: str) -> None:
        """Until the process started as ``name`` listens on ``port`` and answers there."""
        proc = self.procs[name]

        def serving() -> bool:
            if proc.poll() is not None:
                raise Exited(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
            return listens(proc.pid, port) and httpx.get(health_url, timeout=1).status_code == 200

        wait_until(serving, what=name)

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
        self._wait_serving("console", port, f"{url}/healthz")
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
