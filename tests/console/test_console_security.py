"""The console's defences over plain HTTP: sign-in, the session cookie, CSRF, escaping and
tenant scoping, against the real console process and the real stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from api_gateway.transactions.examples import reference_payload
from connxt.secrets import hash_token
from storage.db import session_scope
from storage.models import ApiToken, InboxMessage, OutboxMessage, TransactionEvent
from storage.tenants import find_token
from tests.support.console import (
    OPERATOR_TOKEN,
    act,
    console_client,
    csrf_of,
    notification_ids,
    paid_deposit,
    sign_in,
    signed_in,
)
from tests.support.merchant import deposit
from tests.support.stack import wait_until

# The console's pages and actions: the broker under its worker changes none of it.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]


def operator_events(txn_id: str) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(TransactionEvent.reason).where(
                    TransactionEvent.txn_id == txn_id, TransactionEvent.source == "operator"
                )
            )
        )


def deliveries_asked(notification_id: str) -> int:
    """Outbox rows asking for a delivery of the notification (sent or not)."""
    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(
                OutboxMessage.args["notification_id"].astext == notification_id
            )
        )


def test_a_bad_token_signs_nobody_in(console_url, tenant):
    client = console_client(console_url)
    assert client.get("/transactions").status_code == 303
    for token in ("", "sec_not_a_token_of_ours", "x" * 300):
        refused = sign_in(client, token)
        assert refused.status_code in (401, 422), refused.text
        assert client.get("/transactions").headers["location"].startswith("/login")
    refused = sign_in(client, "sec_not_a_token_of_ours")
    assert "That token is not valid here." in refused.text


def test_sign_in_returns_only_to_pages_of_the_console(console_url, tenant):
    issued, _ = tenant
    for wanted, landed in (
        ("/parked", "/parked"),
        ("//evil.example/x", "/transactions"),
        ("https://evil.example/", "/transactions"),
        ("/\\evil.example", "/transactions"),
    ):
        client = console_client(console_url)
        form = client.get("/login", params={"next": wanted}).text
        answer = client.post(
            "/login", data={"token": issued.token, "csrf": csrf_of(form), "next": wanted}
        )
        assert answer.headers["location"] == landed, wanted
    # A page asked for before signing in is where the sign-in leads back to.
    client = console_client(console_url)
    assert client.get("/psps").headers["location"] == "/login?next=%2Fpsps"


def test_the_session_cookie_is_sealed_http_only_and_strict(console_url, tenant):
    issued, _ = tenant
    client = console_client(console_url)
    answer = sign_in(client, issued.token)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    value = client.cookies["connxt_console"]
    assert issued.token not in value and issued.token[:12] not in value
    assert client.get("/transactions").status_code == 200
    # One flipped character and the cookie opens for nobody.
    middle = len(value) // 2
    flipped = value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1 :]
    client.cookies.set("connxt_console", flipped)
    assert client.get("/transactions").status_code == 303


def test_a_revoked_token_ends_its_sessions(console_url, tenant):
    issued, _ = tenant
    client = signed_in(console_url, issued.token)
    assert client.get("/transactions").status_code == 200
    with session_scope() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_sha256 == hash_token(issued.token))
            .values(revoked_at=datetime.now(UTC))
        )
    assert client.get("/transactions").headers["location"].startswith("/login")
    assert sign_in(console_client(console_url), issued.token).status_code == 401


def test_a_rotated_token_ends_its_sessions_though_the_api_takes_it_until_the_grace_ends(
    console_url, tenant
):
    issued, _ = tenant
    client = signed_in(console_url, issued.token)
    assert client.get("/transactions").status_code == 200
    digest = hash_token(issued.token)
    with session_scope() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_sha256 == digest)
            .values(revoked_at=datetime.now(UTC) + timedelta(hours=1))
        )
    with session_scope() as session:
        token = find_token(session, digest=digest)  # the one lookup the API makes too
    assert token is not None and token.retiring and 3500 < token.stops_in <= 3600
    assert client.get("/transactions").headers["location"].startswith("/login")
    assert sign_in(console_client(console_url), issued.token).status_code == 401


def test_actions_without_the_sessions_csrf_token_are_refused(api, stack, console_url, merchant):
    txn_id = paid_deposit(api, stack, merchant)
    client = signed_in(console_url, merchant.issued.token)
    page = client.get(f"/transactions/{txn_id}")
    (notification_id,) = notification_ids(page.text)
    token = merchant.issued.token
    other = signed_in(console_url, token)  # another session of the same tenant
    other_csrf = csrf_of(other.get("/transactions").text)
    form = {"confirmed": "yes", "target": notification_id}
    for csrf in ("", "forged", other_csrf):
        refused = client.post(f"/transactions/{txn_id}/actions/retry", data={**form, "csrf": csrf})
        assert refused.status_code == 403, refused.text
    # The right token from a page of another site: refused too.
    cross_site = client.post(
        f"/transactions/{txn_id}/actions/retry",
        data={**form, "csrf": csrf_of(page.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    # Signing in and out are forms like the others.
    assert console_client(console_url).post("/login", data={"token": token}).status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert operator_events(txn_id) == [] and deliveries_asked(notification_id) == 0
    assert client.get("/transactions").status_code == 200  # still signed in


def test_everything_shown_is_escaped(api, stack, console_url, merchant):
    hostile = '<script>alert("order")</script>'
    payload = reference_payload(hostile)
    payload["body"]["customer"]["firstName"] = "<img src=x onerror=alert(1)>"
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp, payload=payload)
    client = signed_in(console_url, merchant.issued.token, name='<b onmouseover="x()">Mallory</b>')
    listed = client.get("/transactions", params={"q": hostile})
    assert f'href="/transactions/{txn_id}"' in listed.text
    shown = client.get(f"/transactions/{txn_id}")
    for page in (listed, shown):
        assert "<script>alert" not in page.text and "<b onmouseover" not in page.text
        assert "&lt;script&gt;alert(&#34;order&#34;)&lt;/script&gt;" in page.text
        assert "&lt;b onmouseover=&#34;x()&#34;&gt;Mallory&lt;/b&gt;" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script" not in policy
        assert page.headers["cache-control"] == "no-store"
    assert "<img src=x" not in shown.text


def test_a_tenant_sees_and_touches_only_its_own(api, stack, console_url, merchant, make_tenant):
    theirs = paid_deposit(api, stack, merchant)
    intruder, _ = make_tenant("intruder", "live")
    client = signed_in(console_url, intruder.token)
    assert client.get(f"/transactions/{theirs}").status_code == 404
    link = f'href="/transactions/{theirs}"'
    assert link not in client.get("/transactions").text
    assert link not in client.get("/transactions", params={"q": theirs}).text
    assert client.get(f"/transactions/{theirs}/confirm/reconcile").status_code == 404
    csrf = csrf_of(client.get("/transactions").text)
    for action in ("reconcile", "retry", "replay", "resolve"):
        refused = client.post(
            f"/transactions/{theirs}/actions/{action}",
            data={
                "csrf": csrf,
                "confirmed": "yes",
                "target": "1",
                "decision": "FAILED",
                "note": "x",
            },
        )
        assert refused.status_code == 404, (action, refused.text)
    assert operator_events(theirs) == []
    with session_scope() as session:
        session.execute(
            update(InboxMessage)
            .where(InboxMessage.txn_id == theirs)
            .values(parked_at=func.now(), result="parked after 9 attempts")
        )
    assert "parked after 9 attempts" not in client.get("/parked").text
    health = client.get("/psps").text
    assert merchant.psp["name"] not in health and 'id="queues"' not in health
    # The owner and the operator see it.
    assert (
        signed_in(console_url, merchant.issued.token).get(f"/transactions/{theirs}").status_code
        == 200
    )
    operator = signed_in(console_url, OPERATOR_TOKEN)
    listed = operator.get("/transactions", params={"q": theirs}).text
    assert link in listed and "shop / live" in listed
    assert 'id="queues"' in operator.get("/psps").text
    assert "parked after 9 attempts" in operator.get("/parked").text


def test_an_operator_token_sees_every_tenant_and_is_named_in_the_history(
    api, stack, console_url, merchant
):
    txn_id = paid_deposit(api, stack, merchant)
    operator = signed_in(console_url, OPERATOR_TOKEN, name="ignored for operators")
    page = operator.get(f"/transactions/{txn_id}")
    (notification_id,) = notification_ids(page.text)
    done = act(operator, txn_id, "retry", notification_id)
    assert done.status_code == 303 and done.headers["location"] == f"/transactions/{txn_id}"
    wait_until(lambda: operator_events(txn_id), what="the operator's event")
    assert operator_events(txn_id) == [
        f"notification {notification_id} sent again (by operator ops-alice)"
    ]
    shown = operator.get(f"/transactions/{txn_id}").text
    assert f"Notification {notification_id} is being sent again" in shown  # shown once
    assert "is being sent again" not in operator.get(f"/transactions/{txn_id}").text
