"""RabbitMQ for tests: a virtual host per test run on the shared server, and private
nodes on spare ports for tests that restart the broker.

A virtual host is to RabbitMQ what a key prefix is to Redis: queues, exchanges and
bindings of one run never meet another's. Creating one takes ``rabbitmqctl`` (the machine's
administrator: tests and CI run as root). ``PrivateRabbit`` runs ``rabbitmq-server`` as a
node of its own (its own name, ports and data directory in a temporary directory), so a
test can stop and start it without disturbing anybody else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SHARED_URL = os.environ.get("CONNXT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


def _ctl(*args: str, node: str | None = None, env: dict[str, str] | None = None) -> str:
    argv = [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"]
    if node:
        argv += ["-n", node]
    done = subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def create_vhost(name: str) -> str:
    """A fresh virtual host on the shared server; its broker URL."""
    _ctl("add_vhost", name)
    user = SHARED_URL.split("://", 1)[1].split(":", 1)[0]
    _ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    return f"{SHARED_URL.rstrip('/')}/{name}"


def delete_vhost(name: str) -> None:
    try:
        _ctl("delete_vhost", name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        pass  # already gone, or the server is away: nothing of ours is left to clean


def _server_script() -> str:
    """The broker's own start script (Debian's /usr/sbin one re-runs it through su)."""
    for path in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("rabbitmq-server is not installed")


def _free_port() -> int:
    from tests.support.stack import free_port

    return free_port()


class PrivateRabbit:
    """A RabbitMQ node of its own: ``start()``, ``stop()``, ``restart()``, ``destroy()``.

    Its data (Mnesia and the quorum queues' logs) lives in a temporary directory and
    survives ``stop()``: a restart comes back with the durable queues and what they held.
    It runs as the user running the tests (root in CI, with a cookie in root's home).
    """

    def __init__(self, log_dir: Path | None = None):
        self.port = _free_port()
        self.dist_port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cxrabbit-", dir="/tmp"))
        self.log_dir = log_dir or self.root
        self.node = f"cx{self.port}@localhost"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            # The VM itself, no shell script in between: a signal reaches the broker, which
            # stops cleanly on SIGTERM.
            "RUNNING_UNDER_SYSTEMD": "1",
        }

    def start(self, timeout: float = 90) -> None:
        (self.root / "enabled_plugins").write_text("[].\n")
        log = open(self.log_dir / f"rabbitmq-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [_server_script()],
            env={**os.environ, **self._env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"rabbitmq-server exited ({code}): see {log.name}")
            if self.ping():
                return
            time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ node {self.node} did not come up in {timeout}s")

    def ping(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
                return True
        except Exception:  # not up yet
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
