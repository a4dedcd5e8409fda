"""The fleet of deploy/fleet/fleet.sh, as the chaos suite's ``World``.

``start_fleet`` runs ``fleet.sh up`` (the same script `make fleet` runs), sets up the demo
tenant's Paymaxis account through the balancer, and returns a ``FleetWorld``: a
``tests.chaos.world.World`` whose every socket is opened from the fleet's load host, so
that the chaos suite's accounting (tests/chaos/bursts.py: ``burst_summary``,
``retry_refused``, ``settle_burst``) counts the fleet exactly as it counts a world on one
host. Faults go through the script too: a link down, a path cut, a host's processes killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.world import World
from tests.fleet.netns import inside
from tests.support.flows import open_paymaxis_account

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/fleet/fleet.sh"
RESULTS = Path(__file__).with_name("results.json")
STATE = Path(os.environ.get("CONNXT_FLEET_DIR", "/tmp/connxt-fleet"))
LOAD_HOST = "load"


class FleetError(RuntimeError):
    """fleet.sh failed; its output says why."""


def fleet_sh(*args: str, timeout: float = 120, extra_env: dict[str, str] | None = None) -> str:
    """Run deploy/fleet/fleet.sh; its output. The suite's own CONNXT_* settings stay here:
    the fleet's processes have settings of their own (the script starts them with a clean
    environment anyway)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNXT_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("CONNXT_FLEET_")})
    env.update(extra_env or {})
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        said = done.stdout + done.stderr
        raise FleetError(f"fleet.sh {' '.join(args)} ({done.returncode}):\n{said}")
    return done.stdout + done.stderr


class HostClient(httpx.Client):
    """An httpx client whose connections are opened from a fleet host: use it as ``with``
    (the block is where the calling thread is in the host's namespace)."""

    def __init__(self, host: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._inside = inside(host)

    def __enter__(self) -> HostClient:
        self._inside.__enter__()
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._inside.__exit__(*exc)


@dataclass
class FleetStack:
    """What a World reads of its stack: where the API and the sandbox answer, and logs."""

    api_url: str
    sandbox_url: str
    log_dir: Path
    procs: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# The hosts that run Connxt's own code, in the order a rolling deploy restarts them.
CODE_HOSTS = ("api1", "api2", "worker1", "worker2", "worker3", "beat")
HEAD = "HEAD"


class FleetWorld(World):
    """A World whose API is the balancer and whose sockets all start at the load host."""

    info: dict[str, Any]
    # Which release each Connxt host runs: HEAD (this checkout) or a release's tag, whose
    # checkout is ``release_dir``.
    runs: dict[str, str]
    release_dir: Path | None = None

    def client(self, timeout: float = 15) -> httpx.Client:
        return HostClient(LOAD_HOST, base_url=self.stack.api_url, timeout=timeout)

    def sandbox(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with inside(LOAD_HOST):
            return httpx.request(method, f"{self.stack.sandbox_url}{path}", timeout=10, **kwargs)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with inside(LOAD_HOST):
            return super().query(sql, *params)

    def logs(self, *names: str, tail: int = 40) -> str:
        """The end of each unit's log: ``host.unit`` names, all of them by default."""
        log_dir = self.stack.log_dir
        chosen = names or tuple(sorted(p.stem for p in log_dir.glob("*.log")))
        parts = [f"logs in {log_dir}"]
        for name in chosen:
            lines = self.stack.log(name).splitlines()[-tail:]
            parts.append(f"--- {name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- faults and repairs, through the script -------------------------------------------

    def link(self, host: str, state: str) -> None:
        fleet_sh("link", host, state)

    def cut(self, a: str, b: str) -> None:
        fleet_sh("cut", a, b)

    def heal(self, *hosts: str) -> None:
        fleet_sh("heal", *hosts)

    def kill_host(self, host: str) -> None:
        """SIGKILL to every process in the host's namespace."""
        fleet_sh("kill", host)

    def stop(self, host: str, unit: str | None = None, signal: str = "TERM") -> None:
        """SIGTERM (or ``signal``) to the host's units (or one), waiting for them to exit."""
        fleet_sh("stop", host, *([unit, signal] if unit else []), timeout=180)

    def start(self, host: str, unit: str | None = None, release: str = HEAD) -> None:
        """Start the host's units (or one) and wait until they are ready; ``release``: the
        last release's tag (its checkout is ``release_dir``) instead of this checkout."""
        extra = None
        if release != HEAD:
            assert self.release_dir is not None, "the fleet was made without the release"
            extra = {"CONNXT_FLEET_CODE": str(self.release_dir)}
        fleet_sh("start", host, *([unit] if unit else []), timeout=180, extra_env=extra)
        if host in self.runs:
            self.runs[host] = release

    def migrate(self) -> str:
        """This checkout's migrate job (deploy/k8s/migrate-job.yaml): `connxt db upgrade`
        from an api host, while whatever runs keeps running."""
        return fleet_sh("exec", "api1", "connxt", "db", "upgrade", timeout=180)

    def status(self) -> dict[str, Any]:
        """`fleet.sh status` read: each host's link (UP, DOWN), whether each ``host/unit``
        runs, and whether any path is cut."""
        links, units = {}, {}
        said = fleet_sh("status")
        for line in said.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "link":
                links[parts[0]] = parts[3]
            elif len(parts) >= 3 and parts[2] in ("running", "stopped"):
                units[f"{parts[0]}/{parts[1]}"] = parts[2] == "running"
        return {"links": links, "units": units, "cut": "dropped both ways" in said}

    def make_whole(self) -> list[str]:
        """Undo whatever an earlier test left: every cut healed, every link up, the PSPs
        answering at once, every unit running. What it had to repair, for the log."""
        repaired = []
        status = self.status()
        if status["cut"]:
            self.heal()
            repaired.append("cuts healed")
        for host, state in status["links"].items():
            if state != "UP":
                self.link(host, "up")
                repaired.append(f"{host} link up")
        for unit, running in status["units"].items():
            if not running:
                host, name = unit.split("/", 1)
                self.start(host, name, release=self.runs.get(host, HEAD))
                repaired.append(f"{unit} started")
        self.control(delay_ms=0, psp="paymaxis")
        self.control(delay_ms=0)
        return repaired

    def upgrade_to_head(self) -> list[str]:
        """What a rolling deploy does, without the load: the schema first, then every host
        still on the release restarted on this checkout. What it restarted."""
        behind = [host for host in CODE_HOSTS if self.runs.get(host, HEAD) != HEAD]
        if behind:
            self.migrate()
        for host in behind:
            self.stop(host)
            self.start(host)
            if host.startswith("api"):
                self.wait_balancer({host: "UP"})
        return behind

    def held_by(self, host: str) -> int:
        """Messages the broker has handed to the host's channels and not had acknowledged."""
        address = self.info["hosts"][host]
        listing = fleet_sh("rabbitmqctl", "-q", "list_channels", "name", "messages_unacknowledged")
        return sum(
            int(line.rsplit("\t", 1)[1])
            for line in listing.splitlines()
            if line.startswith(f"{address}:") and "\t" in line
        )

    def consumers(self, host: str) -> int:
        """The consumers the broker has on the host's channels (each lane's queues)."""
        address = self.info["hosts"][host]
        listing = fleet_sh("rabbitmqctl", "-q", "list_channels", "name", "consumer_count")
        return sum(
            int(line.rsplit("\t", 1)[1])
            for line in listing.splitlines()
            if line.startswith(f"{address}:") and "\t" in line
        )

    def queued(self) -> dict[str, int]:
        """Messages waiting in each of the broker's queues (ready or handed out)."""
        listing = fleet_sh("rabbitmqctl", "-q", "list_queues", "name", "messages")
        found = {}
        for line in listing.splitlines():
            name, _, count = line.rpartition("\t")
            if name and count.isdigit():
                found[name] = int(count)
        return found

    def balancer_view(self) -> dict[str, dict[str, Any]]:
        """Each api server as haproxy sees it: its status (UP, DOWN, ...), the requests it
        was sent and has open now, its connection and response errors, and the retries and
        redispatches haproxy made away from it."""
        with HostClient(LOAD_HOST, timeout=5) as client:
            csv = client.get(self.info["balancer_stats"]).text
        rows = [line.split(",") for line in csv.splitlines() if line.startswith("api,")]

        def number(value: str) -> int:
            return int(value or 0)

        return {
            row[1]: {
                "status": row[17],
                "sent": number(row[7]),
                "open": number(row[4]),
                "connect_errors": number(row[13]),
                "response_errors": number(row[14]),
                "retries": number(row[15]),
                "redispatches": number(row[16]),
            }
            for row in rows
            if row[1].startswith("api")
        }

    def wait_balancer(self, wanted: dict[str, str], timeout: float = 30) -> float:
        """Wait until haproxy sees each named api server in its wanted status (UP, DOWN);
        the seconds it took."""
        began = time.monotonic()
        while True:
            view = self.balancer_view()
            if all(view[name]["status"].startswith(status) for name, status in wanted.items()):
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise FleetError(f"the balancer never saw {wanted}: {view}")
            time.sleep(0.2)


def existing_owner() -> str | None:
    """Who made the fleet that is up now (a pid, or `make fleet`); None when none is up."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if not any(line.startswith("connxt-") for line in listed.splitlines()):
        return None
    try:
        return (STATE / "owner").read_text().strip()
    except FileNotFoundError:
        return "unknown"


def clear_abandoned_fleet() -> None:
    """A fleet left by a test run that died is taken down; anyone else's is refused."""
    owner = existing_owner()
    if owner is None:
        return
    if owner.isdigit() and not Path(f"/proc/{owner}").exists():
        fleet_sh("down")
        return
    raise FleetError(
        f"a fleet is up already (made by {owner}); the fleet tests need this machine's "
        "fleet to themselves: `make fleet-down` first"
    )


def start_fleet(
    settings: dict[str, str], settings_file: Path, release: tuple[str, Path] | None = None
) -> FleetWorld:
    """``fleet.sh up`` with ``settings`` applied after the fleet's own; the world on it.
    ``release``: (tag, checkout) of the release every Connxt host starts on (the migrate
    job's too), rather than this checkout."""
    settings_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    extra_env = {
        "CONNXT_FLEET_OWNER": str(os.getpid()),
        "CONNXT_FLEET_SETTINGS": str(settings_file),
    }
    if release:
        extra_env["CONNXT_FLEET_CODE"] = str(release[1])
    output = fleet_sh("up", timeout=600, extra_env=extra_env)
    info = json.loads((STATE / "fleet.json").read_text())
    stack = FleetStack(info["balancer"], info["sandbox"], STATE / "logs")
    db_url = info["database"].replace("postgresql://", "postgresql+psycopg://")
    world = FleetWorld("fleet", stack, db_url, None)
    world.info = info
    world.info["up_output"] = output
    world.runs = {host: release[0] if release else HEAD for host in CODE_HOSTS}
    world.release_dir = release[1] if release else None
    world.tenant = info["tenant"]
    open_paymaxis_account(world)
    return world


def stop_fleet(keep_logs: bool) -> str:
    """``fleet.sh down``: fails when any connxt-* namespace, link or table is left."""
    extra = {"CONNXT_FLEET_KEEP_LOGS": "1"} if keep_logs else {}
    return fleet_sh("down", timeout=120, extra_env=extra)
