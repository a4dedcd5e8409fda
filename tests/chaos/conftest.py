"""Fixtures of the chaos suite; the worlds themselves are in tests/chaos/world.py.

Each world's process logs go to /tmp/connxt-chaos/<name>-<random>/ (not pytest's tmp
dirs, which other test runs on the machine rotate away): removed when the module passed,
kept when one of its tests failed (or with CONNXT_CHAOS_KEEP_LOGS=1), and named in every
failure message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.chaos.world import World, build_world, destroy_world

LOG_ROOT = Path("/tmp/connxt-chaos")
_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        _FAILED_MODULES.add(item.module.__name__)


@pytest.fixture(scope="module")
def world_factory(request):
    """Build worlds for one module; every one is torn down when the module ends."""
    built: list[World] = []

    def make(name: str, private_postgres: bool = False, **options) -> World:
        LOG_ROOT.mkdir(exist_ok=True)
        log_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=LOG_ROOT))
        world = build_world(name, log_dir, private_postgres, **options)
        built.append(world)
        return world

    yield make
    keep = request.module.__name__ in _FAILED_MODULES or os.environ.get("CONNXT_CHAOS_KEEP_LOGS")
    for world in built:
        destroy_world(world)
        if not keep:
            shutil.rmtree(world.stack.log_dir, ignore_errors=True)
