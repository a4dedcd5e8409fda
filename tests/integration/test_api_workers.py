"""`connxt api --workers N`: one port served by N worker processes under uvicorn's
supervisor, which stops them all on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.integration


def _workers_of(pid: int) -> list[int]:
    """The worker processes of uvicorn's supervisor (multiprocessing's resource tracker
    is its child too, and not one of them)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [
        child
        for child in map(int, found.stdout.split())
        if b"spawn_main" in _read(Path(f"/proc/{child}/cmdline"))
    ]


def _running(pid: int) -> bool:
    stat = _read(Path(f"/proc/{pid}/stat"))
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone
        return b""


def test_the_api_serves_one_port_with_several_workers(db, tmp_path):
    stack = Stack({}, tmp_path)
    api = stack._spawn("api", "api", "--port", str(stack.api_port), "--workers", "2")
    try:

        def answering() -> bool:
            if api.poll() is not None:  # it will not start: say why at once
                pytest.fail(f"the api exited: {stack.log('api')[-2000:]}")
            return httpx.get(f"{stack.api_url}/healthz", timeout=1).status_code == 200

        wait_until(answering, timeout=60, what="the api with two workers")
        wait_until(lambda: len(_workers_of(api.pid)) == 2, what="two worker processes")
        for _ in range(10):
            assert httpx.get(f"{stack.api_url}/healthz", timeout=5).status_code == 200
        workers = _workers_of(api.pid)
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0, stack.log("api")[-2000:]
        assert not [pid for pid in workers if _running(pid)]
    finally:
        stack.stop()
