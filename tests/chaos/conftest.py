"""Fixtures of the chaos suite; the worlds themselves are in tests/chaos/world.py."""

from __future__ import annotations

import pytest

from tests.chaos.world import World, build_world, destroy_world


@pytest.fixture(scope="module")
def world_factory(tmp_path_factory):
    """Build worlds for one module; every one is torn down when the module ends."""
    built: list[World] = []

    def make(name: str, private_postgres: bool = False) -> World:
        world = build_world(name, tmp_path_factory.mktemp(f"chaos-{name}"), private_postgres)
        built.append(world)
        return world

    yield make
    for world in built:
        destroy_world(world)
