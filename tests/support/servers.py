"""Private PostgreSQL and Redis servers on spare ports, for tests that stop or restart them.

The shared servers (127.0.0.1:5432 and :6379) are used by every other test run on the
machine, so a chaos test that takes a server down must own it. ``PrivatePostgres`` runs
``initdb`` into a temporary directory and drives it with ``pg_ctl``; PostgreSQL refuses to
run as root, so when we are root every command runs as the ``postgres`` user (through
``runuser``) in a directory that user owns. ``PrivateRedis`` is a plain ``redis-server``
subprocess without persistence: a restart starts it empty, as a crashed cache would be.
``RawServer`` is a bare TCP server for tests that need a server to misbehave exactly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.stack import free_port, wait_until

PG_USER = "postgres"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]  # the newest installed major version
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(f"PostgreSQL's {name} is not installed")


def _as_pg_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_USER, "--", *argv]


class PrivatePostgres:
    """A throw-away cluster: ``start()``, ``stop()``, ``restart()``, ``destroy()``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        # Short path under /tmp: the Unix socket path must stay under ~100 characters, and
        # the postgres user must be able to reach it (pytest's tmp dirs are root-only).
        self.root = Path(tempfile.mkdtemp(prefix="cxpg-", dir="/tmp"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            timeout=120,
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        done = subprocess.run(
            _as_pg_user(argv), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                + self.log()
            )

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                *extra,
                action,
            ],
            timeout=90,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except Exception:  # not running (or already gone): nothing to stop
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` without persistence on its own port; ``restart()`` comes back empty."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None):
        self.port = port or free_port()
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cxredis-"))
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = open(self.log_dir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 (lives with it)
        self.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.log_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.ping, timeout=15, interval=0.05, what=f"redis on {self.port}")

    def ping(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, down_for: float = 0.0, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        if down_for:
            time.sleep(down_for)
        self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)


class RawServer:
    """A TCP server on a loopback port (a spare one by default) that hands each connection
    it accepts to ``serve`` on a thread of its own (a fake PSP, a Redis that never answers,
    a proxy): it counts the connections and can drop them all from its side, as a server's
    idle timeout does."""

    def __init__(self, serve: Callable[[socket.socket], None], port: int = 0):
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._serve = serve
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close_connections(self) -> None:
        for conn in self._open:
            # shutdown, not only close: the serving thread's recv holds the socket open.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._open.clear()

    def close(self) -> None:
        self.sock.close()
        self.close_connections()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
