"""Retiring a sealing key: `connxt keys reseal` moves every sealed value (PSP credentials,
notification secrets, a rotation's previous secret) onto the ring's primary key, in
batches; a run killed half-way loses nothing and the next one finishes; readers and
writers going on meanwhile always find a key they have and never lose a write; and then
`connxt keys check` says the old key may go, and a ring without it opens everything."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from connxt.secrets import KeyRing
from storage.db import session_scope
from storage.models import Environment, FlowTarget, Psp
from storage.notification_secrets import rotate_notification_secret, signing_secrets
from storage.psps import open_credential, seal_credential
from storage.tenants import create_tenant
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration

OLD = "old1:" + base64.b64encode(secrets.token_bytes(32)).decode()
NEW = "new2:" + base64.b64encode(secrets.token_bytes(32)).decode()
# The run's own key stays in every ring: rows other tests sealed open whatever happens here.
RUN = os.environ["CONNXT_ENCRYPTION_KEYS"]
BOTH = f"{NEW},{OLD},{RUN}"  # the new key seals, the old one still opens


def connxt(*args: str, ring: str = BOTH, wait: bool = True):
    command = [sys.executable, "-m", "commands.cli", *args]
    env = {**os.environ, "CONNXT_ENCRYPTION_KEYS": ring}
    if not wait:
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def seed(accounts: int) -> dict[str, str]:
    """A tenant whose notification secret was rotated with an overlap (two secrets), and
    ``accounts`` PSP accounts, everything sealed under the old key; their plaintexts."""
    ring = KeyRing.parse(OLD)
    plain: dict[str, str] = {}
    with session_scope() as session:
        issued = create_tenant(session, ring, f"keys-{secrets.token_hex(3)}", "live")
        environment = session.get(Environment, issued.environment_id)
        rotated = rotate_notification_secret(session, ring, environment, 3600)
        plain["current secret"], plain["previous secret"] = (
            rotated.secret,
            issued.notification_secret,
        )
        target_id = session.scalar(select(FlowTarget.id).where(FlowTarget.name == "Paymaxis"))
        for i in range(accounts):
            psp = Psp(
                id=f"psp_keys{i:05d}{secrets.token_hex(4)}",
                brand_id=issued.brand_id,
                environment_id=issued.environment_id,
                flow_target_id=target_id,
                name=f"account {i}",
                created_by="tests",
                updated_by="tests",
            )
            value = f"pmx-{i}-{secrets.token_hex(6)}"
            seal_credential(ring, psp, {"apiKey": value})
            session.add(psp)
            plain[psp.id] = value
    plain["environment"] = issued.environment_id
    return plain


def under(key_id: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Psp.credential_key_id == key_id))


def opens_everything(ring: KeyRing, plain: dict[str, str]) -> None:
    """Every seeded value opens with ``ring`` and is what was sealed (or last written)."""
    with session_scope() as session:
        for psp in session.scalars(select(Psp).where(Psp.id.in_(list(plain)))):
            assert open_credential(ring, psp) == {"apiKey": plain[psp.id]}, psp.id
        secrets_now = signing_secrets(session, ring, plain["environment"])
    assert secrets_now.current == plain["current secret"]
    assert secrets_now.previous == plain["previous secret"]


def test_a_killed_reseal_loses_nothing_and_the_next_run_finishes(db):
    plain = seed(1500)
    check = json.loads(connxt("keys", "check", "--json").stdout)
    assert check["opens"] is True and check["primary"] == "new2"
    assert check["needOlderKeys"] == {"old1": 1500 + 2}  # two notification secrets
    told = connxt("keys", "check")
    assert told.returncode == 0 and "1502 sealed values still need an older key" in told.stdout

    run = connxt("keys", "reseal", "--batch", "1", wait=False)
    wait_until(lambda: under("new2") >= 20, timeout=60, interval=0.01, what="a few batches")
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    moved = under("new2")
    assert 20 <= moved < 1500, "the run should have been killed half-way"
    # Whatever a killed run left, every value opens with the ring every process has.
    opens_everything(KeyRing.parse(BOTH), plain)

    finished = connxt("keys", "reseal", "--batch", "50", "--json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(finished.stdout)
    assert report["resealed"]["psp credentials"] == 1500 - moved
    assert report["resealed"]["notification secrets"] == 1
    assert report["resealed"]["previous notification secrets"] == 1
    assert report["needOlderKeys"] == {} and report["unreadable"] == []

    told = connxt("keys", "check")
    assert "every sealed value is under the primary key 'new2'" in told.stdout
    # The old key can go: a ring without it opens everything.
    opens_everything(KeyRing.parse(f"{NEW},{RUN}"), plain)
    assert connxt("keys", "check", ring=f"{NEW},{RUN}").returncode == 0


def test_readers_and_writers_meanwhile_always_find_their_key_and_keep_their_writes(db):
    plain = seed(600)
    ring = KeyRing.parse(BOTH)  # a service process, already given the new primary
    stop = threading.Event()
    reads, writes, failures = [0], [0], []
    written = sorted(p for p in plain if p.startswith("psp_"))[:60]

    def reader() -> None:
        while not stop.is_set():
            try:
                with session_scope() as session:
                    for psp in session.scalars(select(Psp).where(Psp.id.in_(list(plain)))):
                        open_credential(ring, psp)
                        reads[0] += 1
            except Exception as exc:  # any failure fails the test below
                failures.append(repr(exc))

    def writer() -> None:
        # As `PATCH /psps/{id}` with a new credential: read, seal, write.
        n = 0
        while not stop.is_set():
            psp_id = written[n % len(written)]
            value = f"rotated-{n}"
            try:
                with session_scope() as session:
                    psp = session.get(Psp, psp_id)
                    seal_credential(ring, psp, {"apiKey": value})
                plain[psp_id] = value
                writes[0] += 1
            except Exception as exc:
                failures.append(repr(exc))
            n += 1

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        done = connxt("keys", "reseal", "--batch", "1")
        took = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert done.returncode == 0, done.stdout + done.stderr
    assert reads[0] > 600 and writes[0] > 10, (reads, writes, took)
    # Every write survived the reseal (no stale value written back over it), and
    # everything is under the new key, which opens it alone.
    opens_everything(KeyRing.parse(f"{NEW},{RUN}"), plain)
    assert under("old1") == 0
