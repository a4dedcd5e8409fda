"""Fixtures of the fleet suite: one fleet (deploy/fleet/fleet.sh) for the whole run.

It comes up on the last release when the run includes the rolling deploy (which upgrades
it to this checkout under load, and runs first), on this checkout otherwise; every other
test gets it on this checkout and whole (``fleet``: cuts healed, links up, units running).

The tests are marked ``fleet`` and run only when asked for (``-m fleet``; .ci/run does):
they need root, take the machine's fleet namespaces for themselves and a few minutes.
The fleet goes down at the end of the run whatever happened, and its teardown fails the
run if any connxt-* namespace, link or nftables table is left; its logs are kept
(/tmp/connxt-fleet-logs-*) when a test failed, or with CONNXT_FLEET_KEEP_LOGS=1.
"""

from __future__ import annotations

import os

import pytest

from tests.fleet.fleet import HEAD, FleetWorld, clear_abandoned_fleet, start_fleet, stop_fleet
from tests.fleet.release import release_checkout

# The fleet's settings on top of deploy/fleet/fleet.sh's own (which are the manifests').
# Nothing here shortens a healing interval: what the tests show, a fleet with the shipped
# defaults does.
FLEET_SETTINGS: dict[str, str] = {}

_failed: list[str] = []


def pytest_collection_modifyitems(config, items):
    """Fleet tests only when the marker expression asks for them (`-m fleet`); the tests
    that start from the last release (``release_fleet``) run first, before any other test
    has the fleet upgraded."""
    if "fleet" not in (config.getoption("markexpr") or ""):
        chosen, skipped = [], []
        for item in items:
            (skipped if item.get_closest_marker("fleet") else chosen).append(item)
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = chosen
        return
    items.sort(key=lambda item: "release_fleet" not in getattr(item, "fixturenames", ()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        _failed.append(item.nodeid)


@pytest.fixture(scope="session")
def fleet_session(request, tmp_path_factory) -> FleetWorld:
    """The run's one fleet. It comes up on the last release when a test of the run starts
    from there (the rolling deploy), on this checkout otherwise."""
    if os.geteuid() != 0:
        pytest.fail("the fleet tests need root (network namespaces, veth, nftables)")
    wants_release = any(
        "release_fleet" in getattr(item, "fixturenames", ()) for item in request.session.items
    )
    release = release_checkout() if wants_release else None
    settings_file = tmp_path_factory.mktemp("fleet") / "settings.env"
    clear_abandoned_fleet()  # before anything of ours exists: someone else's is refused
    try:
        world = start_fleet(FLEET_SETTINGS, settings_file, release)
    except BaseException:
        stop_fleet(keep_logs=True)
        raise
    print(world.info["up_output"])
    try:
        yield world
    finally:
        keep = bool(_failed) or os.environ.get("CONNXT_FLEET_KEEP_LOGS") == "1"
        print(stop_fleet(keep_logs=keep))


@pytest.fixture
def release_fleet(fleet_session: FleetWorld) -> FleetWorld:
    """The fleet as it came up, every Connxt host on the last release."""
    behind = [h for h, release in fleet_session.runs.items() if release == HEAD]
    if behind:
        pytest.fail(f"{', '.join(behind)} already run this checkout: the fleet was upgraded")
    return fleet_session


@pytest.fixture
def fleet(fleet_session: FleetWorld) -> FleetWorld:
    """The fleet on this checkout (hosts still on the release upgraded, as a deploy would)
    and whole again: what an earlier test cut, took down or stopped is repaired first."""
    repaired = fleet_session.make_whole()
    upgraded = fleet_session.upgrade_to_head()
    if repaired or upgraded:
        print(f"before the test: repaired {repaired}, upgraded {upgraded}")
    return fleet_session
