"""The processes under test, started as their users start them and stopped between scenarios.

The sandbox and the floor app live for the whole run. The API, the worker groups and beat
are started per phase with that phase's environment (its own database and broker prefix),
and stopped at its end, which is also when their PostgreSQL backends report their counters.
Each process runs in a session of its own, so stopping one stops its children with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from connxt.settings import get_settings
from tests.support.stack import free_port, wait_until
from workers.lanes import default_lanes

SERVICE_ROLES = ("api", "beat")  # plus "worker1", "worker2", ...


class Stack:
    def __init__(self, log_dir: Path, base_env: dict[str, str]):
        self.log_dir = log_dir
        self.api_port, self.sandbox_port, self.floor_port = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.floor_url = f"http://127.0.0.1:{self.floor_port}"
        self.base_env = {
            **os.environ,
            **base_env,
            "CONNXT_PUBLIC_URL": self.api_url,
            "CONNXT_SANDBOX_URL": self.sandbox_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.phase = "setup"  # names the log files

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        path = self.log_dir / f"{self.phase}.{name}.log"
        log = path.open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, *args],
            env={**self.base_env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child has its own copy

    def log(self, name: str) -> str:
        path = self.log_dir / f"{self.phase}.{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def worker_names(self) -> list[str]:
        return sorted(n for n in self.procs if n.startswith("worker"))

    # -- the long-lived ones -----------------------------------------------------------

    def start_sandbox(self) -> None:
        self._spawn("sandbox", ["-m", "commands.cli", "sandbox", "--port", str(self.sandbox_port)])
        wait_until(lambda: httpx.get(f"{self.sandbox_url}/_control", timeout=1).is_success)

    def start_floor(self) -> None:
        self._spawn("floor", ["-m", "bench.floor_app", "--port", str(self.floor_port)])
        wait_until(lambda: httpx.get(f"{self.floor_url}/healthz", timeout=1).is_success)

    # -- per phase ---------------------------------------------------------------------

    def start_api(self, env: dict[str, str]) -> None:
        self._spawn("api", ["-m", "commands.cli", "api", "--port", str(self.api_port)], env)
        wait_until(
            lambda: httpx.get(f"{self.api_url}/healthz", timeout=1).is_success,
            timeout=30,
            what="api",
        )

    def start_workers(self, env: dict[str, str], args: list[str], groups: int) -> None:
        """``groups`` separate ``connxt worker`` commands, as separate hosts would run them;
        returns once each has said it is ready (Celery's "ready." line from every lane)."""
        names = [f"worker{len(self.worker_names()) + i + 1}" for i in range(groups)]
        # A phase's log may already hold an earlier phase's lines: count from here.
        before = {name: self.log(name).count(" ready.") for name in names}
        for name in names:
            self._spawn(name, ["-m", "commands.cli", "worker", *args], env)
        lanes = 1 if "-Q" in args or "--queues" in args else len(default_lanes(get_settings()))
        for name in names:
            try:
                wait_until(
                    lambda n=name: self.log(n).count(" ready.") >= before[n] + lanes,
                    timeout=60,
                    what=name,
                )
            except TimeoutError:
                # Worker args may silence Celery's banner; go on rather than fail the run.
                print(f"[bench] {name}: no 'ready.' line after 60 s, going on", file=sys.stderr)

    def start_beat(self, env: dict[str, str]) -> None:
        schedule = self.log_dir / f"{self.phase}.beat-schedule"
        self._spawn("beat", ["-m", "commands.cli", "beat", "--schedule", str(schedule)], env)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_service(self) -> None:
        """End a phase: workers and beat at once (queued work is thrown away with the
        phase's broker prefix), the API gracefully (it has no requests left)."""
        for name in [*self.worker_names(), "beat"]:
            self.stop(name, signal.SIGKILL)
        self.stop("api")

    def stop_all(self) -> None:
        self.stop_service()
        for name in list(self.procs):
            self.stop(name)

    def running(self) -> dict[str, list[int]]:
        """Role → root pids of what runs now, for the CPU meter."""
        roles: dict[str, list[int]] = {"api": [], "worker": [], "beat": [], "sandbox": []}
        for name, proc in self.procs.items():
            role = "worker" if name.startswith("worker") else name
            if role in roles and proc.poll() is None:
                roles[role].append(proc.pid)
        return roles


def settle(seconds: float) -> None:
    """A pause that lets what a phase started (pools, sweeps) reach its steady state."""
    time.sleep(seconds)
