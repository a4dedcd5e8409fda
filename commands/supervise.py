"""Keep worker processes running: restart each one when it dies on its own.

Celery exits on some broker failures instead of reconnecting (seen with kombu's Redis
transport during a Redis restart). Under Kubernetes or systemd the platform restarts it;
`connxt worker` does the same by itself, so a plain `make run` or a single machine heals
too. It supervises one process per lane (workers.lanes): each restarts on its own, and a
signal to the supervisor goes to all of them.

Each child is forked from the supervisor, which has imported what they run beforehand
(commands.processes.supervise_lanes): a lane starts, and a dead one is back, without
importing everything again in a fresh interpreter (about 3 CPU-seconds a lane). The
supervisor starts no thread of its own: a fork copies only the forking thread, and a lock
another thread held at that moment would stay held in the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import NoReturn

import structlog

log = structlog.get_logger()

MAX_BACKOFF_SECONDS = 30
HEALTHY_AFTER_SECONDS = 60  # a child that lived this long resets the backoff


@dataclass(frozen=True)
class Child:
    """What a child runs (``run``, in the forked process), with ``env`` added to its
    environment first. A forked child keeps the supervisor's command line; ``name`` (15
    characters at most) is its name in ``top`` and ``ps -o comm``."""

    run: Callable[[], object]
    env: dict[str, str] = field(default_factory=dict)
    name: str = ""


class _Forked:
    """A running child: Popen's ``poll`` and ``send_signal``, for a forked process."""

    def __init__(self, child: Child) -> None:
        # Unflushed output would otherwise be written twice, once by each process.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_forked(child)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def _run_forked(child: Child) -> NoReturn:
    """The child's whole life: it never returns into the supervisor's loop."""
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)  # the supervisor's forwarding is not ours
        os.environ.update(child.env)
        from connxt.settings import get_settings

        get_settings.cache_clear()  # read again, with the child's environment
        if child.name:
            _name_this_process(child.name)
        child.run()
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        traceback.print_exc()
    finally:
        with suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _name_this_process(name: str) -> None:
    """Linux's name for the process (prctl PR_SET_NAME): what top and ps -o comm show. Not
    its command line: rewriting that (setproctitle) overwrites the environment's memory,
    which /proc/PID/environ then no longer shows, and makes Celery retitle every process."""
    with suppress(OSError, AttributeError):  # not Linux: the name stays
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


def _exit_code(code: object) -> int:
    """As the interpreter turns ``sys.exit(code)`` into a process's exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@dataclass
class _Supervised:
    name: str
    child: Child
    proc: _Forked | None = None
    started: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = field(default=None)

    def start(self) -> None:
        self.proc = _Forked(self.child)
        self.started, self.restart_at = time.monotonic(), None


def supervise_all(children: dict[str, Child]) -> int:
    """Run every child (by name) until a signal stops them."""
    stopping = False
    running = [_Supervised(name, child) for name, child in children.items()]

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in running:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in running:
        child.start()
    code = 0
    while True:
        alive = False
        for child in running:
            if child.proc is None:
                if not stopping and child.restart_at is not None:
                    alive = True
                    if time.monotonic() >= child.restart_at:
                        child.start()
                continue
            exit_code = child.proc.poll()
            if exit_code is None:
                alive = True
                continue
            code = code or exit_code
            child.proc = None
            if stopping:
                continue
            # Even a clean exit is restarted: a lane that stops by itself (Celery gives up
            # on a broker error and exits 0) would otherwise leave its queues unconsumed.
            lived = time.monotonic() - child.started
            child.backoff = (
                1.0
                if lived > HEALTHY_AFTER_SECONDS
                else min(child.backoff * 2, MAX_BACKOFF_SECONDS)
            )
            child.restart_at = time.monotonic() + child.backoff
            alive = True
            log.error(
                "worker.exited",  # restarted
                lane=child.name,
                exit_code=exit_code,
                lived_s=round(lived, 1),
                restart_in_s=child.backoff,
            )
        if not alive:
            return code
        time.sleep(0.2)
