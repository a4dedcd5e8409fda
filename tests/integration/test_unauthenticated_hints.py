"""What traffic nobody authenticated can make us do: redirects and unverified webhooks ask
the PSP at most once per window, production accounts sign their webhooks, and a webhook
moves only transactions of the PSP account it came to."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import pytest
from sqlalchemy import text

from connxt import tasks
from connxt.settings import get_settings
from storage.db import session_scope
from storage.inbox import store
from storage.inquiries import request_inquiry
from tests.support.flows import V2, create_psp, paymaxis_psp, target, wait_status
from tests.support.merchant import deposit, payment_of, transaction
from tests.support.stack import wait_until

# How often an unauthenticated hint asks the PSP does not depend on the broker.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]

HINTS = 25


@pytest.fixture
def paymaxis(api, stack, tenant):
    _, headers = tenant
    flow_target, psp, credential = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp, credential


def accepted_deposit(api, stack, headers, flow_target, psp) -> tuple[str, int]:
    """A deposit waiting at the PSP, and how often the PSP was asked about it so far."""
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    return txn_id, payment_of(stack, txn_id)["statusReads"]


def reads_after_a_while(stack, txn_id: str, before: int) -> int:
    # Room for the inquiries booked to run (and for any that should not have been).
    time.sleep(3)
    return payment_of(stack, txn_id)["statusReads"] - before


def test_a_loop_of_redirects_asks_the_psp_once_per_window(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    txn_id, before = accepted_deposit(api, stack, headers, flow_target, psp)
    for _ in range(HINTS):
        answer = api.get(f"{V2}/external/redirects/{txn_id}", follow_redirects=False)
        assert answer.status_code == 303
    reads = reads_after_a_while(stack, txn_id, before)
    # One inquiry for the redirects; the rest is the reconciliation schedule (every 2-3 s
    # in the tests), which asks whatever the traffic does.
    assert 1 <= reads <= 4, reads


def test_a_loop_of_unverified_webhooks_asks_the_psp_once_per_window(api, stack, tenant):
    _, headers = tenant
    flow_target = target(api, headers, "Paymaxis")
    unsigned = {"apiKey": f"pmx_{secrets.token_hex(6)}"}  # no webhookSigningKey
    psp = create_psp(api, headers, flow_target, unsigned, name="Unsigned")
    txn_id, before = accepted_deposit(api, stack, headers, flow_target, psp)
    for n in range(HINTS):
        # Each a distinct notification (another payment id), so each is stored.
        claim = {"id": f"fake_{n}", "referenceId": txn_id, "state": "COMPLETED"}
        answer = api.post(f"{V2}/external/webhooks/{psp['id']}", json=claim)
        assert answer.status_code == 200
    reads = reads_after_a_while(stack, txn_id, before)
    assert 1 <= reads <= 4, reads
    assert transaction(api, headers, txn_id)["status"] == "PG_ACCEPTED"

    def results() -> list[str | None]:
        stored = api.get(f"{V2}/transactions/{txn_id}/webhooks", headers=headers).json()
        return [item["result"] for item in stored["data"]["items"]]

    # Notifications that met a busy lock are processed a little later.
    done = wait_until(lambda: None not in results() and results(), what="all processed")
    assert len(done) == HINTS
    assert done.count("unverified: the PSP is asked instead") <= 2
    assert done.count("unverified: the PSP was asked just now") >= HINTS - 2


def test_an_inquiry_hint_books_once_per_window(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    txn_id, _ = accepted_deposit(api, stack, headers, flow_target, psp)
    queue = tasks.psp_queue("Paymaxis")
    with session_scope() as session:
        assert request_inquiry(session, txn_id, queue) is True
    with session_scope() as session:
        assert request_inquiry(session, txn_id, queue) is False
    window = get_settings().hint_inquiry_interval_seconds
    with session_scope() as session:  # the window passes
        session.execute(
            text(
                "UPDATE transactions SET inquiry_requested_at = now() - make_interval(secs => :s)"
                " WHERE id = :id"
            ),
            {"s": window + 1, "id": txn_id},
        )
    with session_scope() as session:
        assert request_inquiry(session, txn_id, queue) is True


def test_a_webhook_moves_only_transactions_of_its_own_account(api, stack, paymaxis):
    """The ingress refuses to store such a notification; a stored one (replayed, re-driven,
    or stored before that check) is refused again by the worker."""
    from workers.webhooks import process_inbox_message

    headers, flow_target, psp, credential = paymaxis
    _, other_psp, _ = paymaxis_psp(api, stack.sandbox_url, headers, name="Other")
    theirs, _ = accepted_deposit(api, stack, headers, flow_target, other_psp)
    payment = payment_of(stack, theirs)
    body = json.dumps(
        {
            "id": payment["id"],
            "referenceId": theirs,
            "state": "COMPLETED",
            "amount": 200,
            "currency": "USD",
        }
    ).encode()
    signature = hmac.new(credential["webhookSigningKey"].encode(), body, hashlib.sha256)
    with session_scope() as session:
        inbox_id = store(
            session,
            psp["id"],  # came to our first account, names the other account's payment
            f"{payment['id']}:COMPLETED",
            theirs,
            {"signature": signature.hexdigest(), "content-type": "application/json"},
            body,
            verified=True,
        )
    assert process_inbox_message(inbox_id) == "ignored"
    assert transaction(api, headers, theirs)["status"] == "PG_ACCEPTED"
    stored = api.get(f"{V2}/transactions/{theirs}/webhooks", headers=headers).json()
    (row,) = stored["data"]["items"]
    assert row["result"] == "ignored: not a transaction of this PSP account"


@pytest.fixture
def production(monkeypatch):
    monkeypatch.setenv("CONNXT_ENV", "production")
    get_settings.cache_clear()
    assert get_settings().is_production
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _psp_body(flow_target: dict, credential: dict, name: str) -> dict:
    return {
        "name": name,
        "credential": json.dumps(credential),
        "flowTargetId": flow_target["id"],
        "operations": [
            {
                "flowActionId": a["id"],
                "flowDefinitionId": a["definition"]["id"],
                "status": "ENABLED",
            }
            for a in flow_target["actions"]
        ],
    }


def test_production_paymaxis_accounts_must_sign_their_webhooks(client, tenant, production):
    _, headers = tenant
    paymaxis_target = target(client, headers, "Paymaxis")
    unsigned = {"apiKey": "pmx_live_1"}
    refused = client.post(
        f"{V2}/psps/external", headers=headers, json=_psp_body(paymaxis_target, unsigned, "A")
    )
    assert refused.status_code == 400, refused.text
    (error,) = refused.json()["errors"]
    assert error["field"] == "credential.webhookSigningKey"
    assert "production" in error["message"]

    signed = {"apiKey": "pmx_live_1", "webhookSigningKey": "whk_live_1"}
    created = client.post(
        f"{V2}/psps/external", headers=headers, json=_psp_body(paymaxis_target, signed, "A")
    )
    assert created.status_code == 200, created.text
    # Rotating the credential cannot drop the key either.
    psp_id = created.json()["data"]["id"]
    patched = client.patch(
        f"{V2}/psps/{psp_id}", headers=headers, json={"credential": json.dumps(unsigned)}
    )
    assert patched.status_code == 400
    assert patched.json()["errors"][0]["field"] == "credential.webhookSigningKey"

    # Sticpay signs its callbacks with the API key every account has.
    sticpay_target = target(client, headers, "Sticpay")
    sticpay = {"merchantEmail": "m@shop.example", "apiKey": "stk_live_1"}
    answer = client.post(
        f"{V2}/psps/external", headers=headers, json=_psp_body(sticpay_target, sticpay, "S")
    )
    assert answer.status_code == 200, answer.text


def test_development_paymaxis_accounts_may_leave_webhooks_unsigned(client, tenant):
    _, headers = tenant
    paymaxis_target = target(client, headers, "Paymaxis")
    body = _psp_body(paymaxis_target, {"apiKey": "pmx_dev"}, "Dev")
    assert client.post(f"{V2}/psps/external", headers=headers, json=body).status_code == 200
