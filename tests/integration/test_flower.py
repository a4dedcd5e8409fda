"""`connxt flower` runs Flower on the configured broker and sees the running lanes."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.support.stack import free_port, wait_until
from workers.lanes import default_lanes

pytestmark = pytest.mark.integration


def test_flower_shows_every_lane_of_the_running_worker(stack):
    from connxt.settings import get_settings

    port = free_port()
    stack.env["FLOWER_UNAUTHENTICATED_API"] = "true"  # the JSON API, for this test only
    stack._spawn("flower", "flower", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthcheck", timeout=2).text == "OK",
            timeout=30,
            what="flower",
        )

        def lanes_seen() -> set[str]:
            workers = httpx.get(f"{url}/api/workers", params={"refresh": 1}, timeout=10).json()
            # Node names are "<lane>-<pid of connxt worker>@<host>".
            return {name.split("@", 1)[0].rsplit("-", 1)[0] for name in workers}

        expected = {lane.name for lane in default_lanes(get_settings())}
        seen = wait_until(lambda: lanes_seen() >= expected and lanes_seen(), timeout=30)
        assert expected <= seen, (seen, stack.log("flower")[-2000:])
        page = httpx.get(f"{url}/workers", timeout=10)
        assert page.status_code == 200 and "Flower" in page.text
    finally:
        stack.env.pop("FLOWER_UNAUTHENTICATED_API", None)
        stack.kill("flower", signal.SIGTERM)
