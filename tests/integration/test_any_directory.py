"""Nothing depends on the working directory: beat starts from a directory without
``.connxt/`` (a new host, a bare install), and a command run from elsewhere uses the
service's key or refuses, naming it (connxt/state.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from connxt.secrets import key_ring

CONNXT = str(Path(sys.executable).parent / "connxt")
CHECKOUT = Path(__file__).resolve().parents[2]


def env_for(cwd: Path, **changes: str | None) -> dict[str, str]:
    # The checkout on the path as an installed package would be, not through the directory.
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    for name, value in changes.items():
        env.pop(name, None) if value is None else env.__setitem__(name, value)
    return env


def test_beat_starts_and_sends_from_a_directory_without_state(tmp_path):
    bare = tmp_path / "bare-host"
    bare.mkdir()
    log = tmp_path / "beat.log"
    with open(log, "wb") as out:
        beat = subprocess.Popen(
            [CONNXT, "beat", "--loglevel", "INFO"],
            cwd=bare,
            env=env_for(bare),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "Sending due task" not in log.read_text() and time.monotonic() < deadline:
            assert beat.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "Sending due task" in log.read_text(), log.read_text()
        assert beat.poll() is None
        assert list(bare.iterdir()) == [], "beat kept something in its working directory"
    finally:
        beat.terminate()
        beat.wait(timeout=15)


def test_a_beat_that_cannot_run_exits_non_zero_at_once(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    started = time.monotonic()
    done = subprocess.run(
        [CONNXT, "beat", "--schedule", str(blocker / "schedule")],
        cwd=tmp_path,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 20
    assert "cannot keep the schedule" in done.stderr and "Traceback" not in done.stderr


def test_a_tenant_made_from_another_directory_is_sealed_with_the_services_key(
    tmp_path, make_tenant
):
    """The service runs with a development key in its state directory; an operator runs
    ``connxt tenants create`` from their home directory: the same key, or a refusal that
    names the key file, never a second key."""
    make_tenant("first", "sandbox")  # the database holds secrets sealed with this run's key
    state = tmp_path / "state"
    state.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    create = [CONNXT, "tenants", "create", "--brand", "b", "--environment", "e", "--json"]

    def create_tenant() -> subprocess.CompletedProcess[str]:
        """``connxt tenants create`` from an empty home, no key but what the state directory
        holds."""
        return subprocess.run(
            create,
            cwd=home,
            env=env_for(
                home,
                CONNXT_ENCRYPTION_KEYS=None,
                CONNXT_LOCAL_KEY_FILE=None,
                CONNXT_STATE_DIR=str(state),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )

    # A development key that did not seal what is stored: refused, the file named.
    refused = create_tenant()
    assert refused.returncode == 3, refused.stderr
    assert str(state / "encryption.key") in refused.stderr
    assert "Traceback" not in refused.stderr

    # The service's own key, found from the state directory whatever the working directory.
    (state / "encryption.key").write_text(os.environ["CONNXT_ENCRYPTION_KEYS"])
    made = create_tenant()
    assert made.returncode == 0, made.stderr
    assert list(home.iterdir()) == []

    from storage.db import session_scope
    from storage.key_check import opens_what_is_stored

    with session_scope() as session:
        assert opens_what_is_stored(session, key_ring())
