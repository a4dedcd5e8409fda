"""The console's part of the audit trail: sign-ins, sign-outs and every action, recorded
with who did it; the Audit page shows an operator everything and a tenant its own."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from storage.db import session_scope
from storage.models import AuditEntry
from tests.support.console import OPERATOR, OPERATOR_TOKEN, act, csrf_of, signed_in
from tests.support.merchant import deposit

# The console's pages and actions: the broker under its worker changes none of it.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]


def entries_by(actor_part: str) -> list[AuditEntry]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.actor.contains(actor_part))
                .order_by(AuditEntry.id)
            )
        )


def test_sign_ins_actions_and_sign_outs_are_recorded_and_shown_in_scope(
    api, stack, console_url, merchant, make_tenant
):
    ada, bob = f"Ada-{secrets.token_hex(3)}", f"Bob-{secrets.token_hex(3)}"
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    client = signed_in(console_url, merchant.issued.token, name=ada)
    assert act(client, txn_id, "reconcile").status_code == 303
    page = client.get("/audit")
    assert page.status_code == 200
    assert "console.signed_in" in page.text and "reconcile.asked" in page.text
    assert f'href="/transactions/{txn_id}"' in page.text
    signed_out = client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert signed_out.status_code == 303

    recorded = entries_by(ada)
    assert [e.action for e in recorded] == [
        "console.signed_in",
        "reconcile.asked",
        "console.signed_out",
    ]
    scope = (merchant.issued.brand_id, merchant.issued.environment_id)
    assert {(e.brand_id, e.environment_id) for e in recorded} == {scope}
    assert recorded[1].subject == txn_id and recorded[1].before == {"status": "PG_ACCEPTED"}
    assert recorded[0].after == {"client": "127.0.0.1"}

    # Another tenant sees its own sign-in, and nothing of the first tenant's.
    other, _ = make_tenant("elsewhere", "live")
    theirs = signed_in(console_url, other.token, name=bob).get("/audit").text
    assert bob in theirs and "console.signed_in" in theirs
    assert ada not in theirs and txn_id not in theirs

    # An operator sees every tenant's, with the tenant named.
    operator = signed_in(console_url, OPERATOR_TOKEN)
    everything = operator.get("/audit").text
    assert ada in everything and bob in everything and txn_id in everything
    assert "shop / live" in everything and "elsewhere / live" in everything
    (operator_sign_in, *_) = entries_by(f"operator {OPERATOR}")[-1:]
    assert operator_sign_in.action == "console.signed_in"
    assert operator_sign_in.environment_id is None  # every tenant's: none in particular


def test_a_refused_sign_in_is_not_kept(console_url):
    """Anyone can try a token, and the trail keeps every row for ever: refusals are logged
    (console.sign_in_refused), not recorded."""
    with session_scope() as session:
        before = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    from tests.support.console import console_client, sign_in

    with console_client(console_url) as client:
        assert sign_in(client, "sec_" + secrets.token_hex(16)).status_code == 401
    with session_scope() as session:
        after = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    assert after == before
