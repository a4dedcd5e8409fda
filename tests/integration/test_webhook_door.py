"""The unauthenticated webhook door: what a stranger's requests cost the ingress.

Anyone can post to ``/external/webhooks/{pspId}``, and a real PSP's id is public (it is in
the callback URL a Sticpay page carries). A repeated unknown id costs one query, a flood of
bad signatures against a real PSP costs at most one reload of its context per interval and
leaves the context its genuine webhooks use in place, and a client that goes away mid-body
is one quiet line in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from api_gateway.psps import cache
from connxt.secrets import key_ring
from storage import psps as psp_repo
from storage.db import session_scope
from storage.models import Psp
from tests.support.flows import V2, create_psp, target
from tests.support.stack import wait_until
from tests.support.statements import statements_sent

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def psp_lookups():
    """The statements this process sends that read PSP accounts."""
    seen: list[str] = []

    def count(statement: str) -> None:
        if "FROM psps" in statement:
            seen.append(statement)

    with statements_sent(count):
        yield seen


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.forget_cached_psps()
    yield
    cache.forget_cached_psps()


@pytest.fixture
def signed_psp(client, tenant):
    """A Paymaxis account with a webhook signing key: (psp, signing key)."""
    _, headers = tenant
    key = secrets.token_hex(16)
    credential = {"apiKey": "pmx_door", "webhookSigningKey": key}
    psp = create_psp(client, headers, target(client, headers, "Paymaxis"), credential)
    return psp, key


def webhook(key: str, state: str = "COMPLETED") -> tuple[bytes, dict[str, str]]:
    payment = {"id": f"pay_{secrets.token_hex(4)}", "referenceId": "txn_door", "state": state}
    body = json.dumps(payment).encode()
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Signature": signature, "Content-Type": "application/json"}


def post_webhook(client, psp_id: str, body: bytes, headers: dict[str, str]):
    return client.post(f"{V2}/external/webhooks/{psp_id}", content=body, headers=headers)


def test_a_repeated_unknown_psp_id_costs_one_lookup(client):
    unknown = f"psp_{secrets.token_hex(8)}"
    body, headers = webhook("whatever")
    with psp_lookups() as lookups:
        for _ in range(30):
            answer = post_webhook(client, unknown, body, headers)
            assert answer.status_code == 404, answer.text
            assert answer.json()["message"] == "PSP not found"
    assert len(lookups) == 1


def test_a_psp_created_through_this_process_is_found_at_once(client, tenant, monkeypatch):
    """Its id was asked for (and refused) before it existed: the create forgets that."""
    _, headers = tenant
    chosen = f"psp_{secrets.token_hex(8)}"
    body, webhook_headers = webhook("k")
    assert post_webhook(client, chosen, body, webhook_headers).status_code == 404
    monkeypatch.setattr("storage.psps.random_id", lambda _prefix: chosen)
    psp = create_psp(client, headers, target(client, headers, "Paymaxis"), {"apiKey": "pmx_new"})
    assert psp["id"] == chosen
    # Unsigned account: the webhook is stored as a hint (200), not refused as unknown.
    assert post_webhook(client, chosen, body, webhook_headers).status_code == 200


def test_a_psp_created_elsewhere_is_found_within_the_cache_lifetime(client, signed_psp):
    """Another ingress process cannot tell this one: the remembered refusal expires."""
    psp, key = signed_psp
    twin = f"psp_{secrets.token_hex(8)}"
    body, headers = webhook(key)
    assert post_webhook(client, twin, body, headers).status_code == 404
    with session_scope() as session:
        columns = [
            c
            for (c,) in session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'psps' AND column_name NOT IN ('id', 'name')"
                )
            )
        ]
        listed = ", ".join(columns)
        session.execute(
            text(
                f"INSERT INTO psps (id, name, {listed})"
                f" SELECT :twin, name || ' twin', {listed} FROM psps WHERE id = :id"
            ),
            {"twin": twin, "id": psp["id"]},
        )
        # The credential is sealed for its PSP's id: the twin gets its own.
        credential = {"apiKey": "pmx_door", "webhookSigningKey": key}
        psp_repo.seal_credential(key_ring(), session.get(Psp, twin), credential)
    started = time.monotonic()
    assert post_webhook(client, twin, body, headers).status_code == 404  # still remembered
    wait_until(
        lambda: post_webhook(client, twin, body, headers).status_code == 200,
        timeout=cache.UNKNOWN_SECONDS + 3,
        what="the PSP created elsewhere to be found",
    )
    assert time.monotonic() - started <= cache.UNKNOWN_SECONDS + 3


def test_forged_signatures_reload_a_real_psp_at_most_once(client, signed_psp):
    psp, key = signed_psp
    body, headers = webhook(key)
    assert post_webhook(client, psp["id"], body, headers).status_code == 200
    with psp_lookups() as lookups:
        for _ in range(40):
            forged, forged_headers = webhook("not-the-key")
            answer = post_webhook(client, psp["id"], forged, forged_headers)
            assert answer.status_code == 401, answer.text
            assert answer.json()["message"] == "Invalid signature"
        # The genuine webhooks that come meanwhile still verify from the cache.
        genuine, genuine_headers = webhook(key)
        assert post_webhook(client, psp["id"], genuine, genuine_headers).status_code == 200
    assert len(lookups) <= 1, lookups


def test_a_key_rotated_elsewhere_is_picked_up_by_a_reload(client, signed_psp):
    """The reason a bad signature may reload at all: the key changed through another
    process. Once the interval has passed since the last load, the first webhook signed
    with the new key reloads the context and verifies."""
    psp, key = signed_psp
    body, headers = webhook(key)
    assert post_webhook(client, psp["id"], body, headers).status_code == 200
    rotated = secrets.token_hex(16)
    with session_scope() as session:
        row = session.get(Psp, psp["id"])
        psp_repo.seal_credential(
            key_ring(), row, {"apiKey": "pmx_door", "webhookSigningKey": rotated}
        )
    time.sleep(cache.RELOAD_INTERVAL_SECONDS + 0.1)
    body, headers = webhook(rotated)
    with psp_lookups() as lookups:
        assert post_webhook(client, psp["id"], body, headers).status_code == 200
    assert len(lookups) == 1


# Drives one request whose client goes away after ten bytes of its body, in a process of
# its own that logs at INFO (the suite's processes log at WARNING), as uvicorn would.
_GONE_CLIENT = """
import json, sys
from fastapi.testclient import TestClient
from api_gateway.app import create_app
from tests.support.asgi import send_raw

path, headers = sys.argv[1], json.loads(sys.argv[2])
with TestClient(create_app()) as client:
    answer = send_raw(client, path, headers, [b'{"id": "pa'], disconnect=True)
print(json.dumps({"escaped": repr(answer.escaped) if answer.escaped else None}))
"""


@pytest.mark.parametrize("route", ["webhook", "step3"])
def test_a_client_gone_mid_body_is_one_quiet_line(tenant, route):
    path, headers = f"{V2}/external/webhooks/psp_any", {"Content-Type": "application/json"}
    if route == "step3":  # the body is read once the token is known
        path, headers = f"{V2}/transactions", {**tenant[1], "Content-Type": "application/json"}
    done = subprocess.run(
        [sys.executable, "-c", _GONE_CLIENT, path, json.dumps(headers)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONNXT_LOG_LEVEL": "INFO"},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"escaped": None}
    lines = done.stderr.splitlines()
    ours = [line for line in lines if " api." in line]
    assert len(ours) == 1, done.stderr
    assert "[info" in ours[0] and "api.client_disconnected" in ours[0], ours
    assert f"path={path}" in ours[0]
    assert not any("Traceback" in line or "[error" in line for line in lines), done.stderr
