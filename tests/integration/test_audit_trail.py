"""The audit trail: every administrative act from the CLI and the API is recorded with who,
when, what and before/after, never a secret; PostgreSQL itself refuses to change or remove
an entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import select, text, update

from connxt.secrets import key_ring
from state_machine import Status
from storage import audit
from storage.db import get_engine, session_scope
from storage.models import AuditEntry, Environment, Transaction
from storage.tenants import create_tenant
from tests.support.cli import cli
from tests.support.flows import V2, create_psp, target
from tests.support.rollback import Ledger
from tests.support.testenv import DB_URL

pytestmark = pytest.mark.integration


def trail(since: datetime) -> list[dict]:
    """`connxt audit list --since ... --json`, oldest first."""
    listed = cli("audit", "list", "--since", since.isoformat(), "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_postgresql_refuses_to_change_or_remove_an_entry(db):
    with session_scope() as session:
        audit.record(session, "cli tester@host", "test.recorded", "something", None, {"n": 1})
        entry_id = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    dsn = DB_URL.replace("postgresql+psycopg://", "postgresql://")
    for statement in (
        f"UPDATE audit_log SET actor = 'someone else' WHERE id = {entry_id}",
        f"DELETE FROM audit_log WHERE id = {entry_id}",
        "TRUNCATE audit_log",
    ):
        # A connection of its own, as any client of the database would use: not the code's
        # rules but the database's.
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
        ):
            conn.execute(statement)
    with session_scope() as session:
        entry = session.get(AuditEntry, entry_id)
        assert entry.actor == "cli tester@host" and entry.after == {"n": 1}


def test_the_command_lines_acts_are_recorded_without_their_secrets(db):
    started = datetime.now(UTC)
    created = cli("tenants", "create", "--brand", "audited", "--environment", "live", "--json")
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    rotated = cli(
        "tenants", "rotate", "--brand", "audited", "--environment", "live", "--grace", "60",
        "--json",
    )  # fmt: skip
    new_token = json.loads(rotated.stdout)["token"]
    tokens = json.loads(
        cli("tenants", "tokens", "--brand", "audited", "--environment", "live", "--json").stdout
    )
    first_id = tokens[0]["id"]
    assert cli("tenants", "revoke", "--token-id", str(first_id)).returncode == 0
    secret = cli(
        "tenants", "rotate-secret", "--brand", "audited", "--environment", "live",
        "--overlap", "60", "--json",
    )  # fmt: skip
    assert secret.returncode == 0, secret.stderr
    new_secret = json.loads(secret.stdout)["notificationSecret"]
    url = "https://merchant.example/hooks?token=mtk-in-the-url"
    assert (
        cli(
            "tenants", "notification-url", "--brand", "audited", "--environment", "live",
            "--url", url,
        ).returncode
        == 0
    )  # fmt: skip
    try:
        disabled = cli("catalog", "disable", "--target", "Sticpay", "--action", "WITHDRAW")
        assert disabled.returncode == 0, disabled.stderr
    finally:
        assert (
            cli("catalog", "enable", "--target", "Sticpay", "--action", "WITHDRAW").returncode == 0
        )

    entries = trail(started)
    acts = [(e["action"], e["subject"]) for e in entries]
    environment = issued["environmentId"]
    assert acts == [
        ("tenant.created", environment),
        ("token.rotated", environment),
        ("token.revoked", f"token #{first_id}"),
        ("notification_secret.rotated", environment),
        ("notification_url.changed", environment),
        ("catalog.disabled", "Sticpay WITHDRAW"),
        ("catalog.enabled", "Sticpay WITHDRAW"),
    ]
    for entry in entries:
        assert entry["actor"].startswith("cli ") and "@" in entry["actor"]
        assert entry["at"]
    tenant_entries = [e for e in entries if e["action"].split(".")[0] != "catalog"]
    assert {(e["brandId"], e["environmentId"]) for e in tenant_entries} == {
        (issued["brandId"], environment)
    }
    by_action = {e["action"]: e for e in entries}
    assert by_action["token.rotated"]["after"]["graceSeconds"] == 60
    assert by_action["catalog.disabled"]["before"] == {"status": "ENABLED"}
    assert by_action["catalog.disabled"]["after"]["status"] == "DISABLED"
    assert by_action["notification_url.changed"]["before"] == {"url": None}
    assert by_action["notification_url.changed"]["after"] == {
        "url": "https://merchant.example/hooks?token=***"
    }
    # Neither the tokens, nor the notification secrets, nor the merchant's URL token.
    written = json.dumps(entries)
    for secret_value in (
        issued["token"],
        new_token,
        issued["notificationSecret"],
        new_secret,
        "mtk-in-the-url",
    ):
        assert secret_value not in written
        assert secret_value.removeprefix("whsec_") not in written

    text_listing = cli("audit", "list", "--since", "1h")
    assert "tenant.created" in text_listing.stdout and "catalog.enabled" in text_listing.stdout
    assert (
        cli("audit", "list", "--since", "yesterday").returncode == 1
    )  # refused, stated on stderr (commands/exits.py)


def test_psp_accounts_created_changed_and_rotated_through_the_api(client, tenant):
    issued, headers = tenant
    started = datetime.now(UTC)
    flow_target = target(client, headers, "Paymaxis")
    first = {"apiKey": "pmx-first-KEY", "webhookSigningKey": "whk-first-KEY"}
    created = create_psp(client, headers, flow_target, first, name="Audited")
    operations = [{"flowActionId": a["id"], "status": "ENABLED"} for a in flow_target["actions"]]
    psp_id = created["id"]
    second = {"apiKey": "pmx-second-KEY", "webhookSigningKey": "whk-second-KEY"}
    patched = client.patch(
        f"{V2}/psps/{psp_id}",
        headers=headers,
        json={"name": "Audited again", "status": "DISABLED", "credential": json.dumps(second)},
    )
    assert patched.status_code == 200, patched.text

    with session_scope() as session:
        entries = audit.entries(session, (issued.brand_id, issued.environment_id), since=started)
    entries.reverse()
    assert [(e.action, e.subject) for e in entries] == [
        ("psp.created", psp_id),
        ("psp.credential_rotated", psp_id),
        ("psp.updated", psp_id),
    ]
    assert {e.actor for e in entries} == {f"api token #{issued.token_id}"}
    created_entry, rotated_entry, updated_entry = entries
    assert created_entry.before is None and created_entry.after["name"] == "Audited"
    assert created_entry.after["operations"] == operations
    assert rotated_entry.before == {"sealedUnder": key_ring().primary}
    assert updated_entry.before["name"] == "Audited" and updated_entry.before["status"] == "ENABLED"
    assert updated_entry.after["name"] == "Audited again"
    assert updated_entry.after["status"] == "DISABLED"
    written = json.dumps([e.as_dict() for e in entries])
    for value in (*first.values(), *second.values(), issued.token):
        assert value not in written


def test_a_review_resolution_from_the_command_line_is_recorded(db):
    ledger = Ledger.open()
    txn_id = ledger.deposit(Status.PG_ACCEPTED, amount="200.00")
    with session_scope() as session:
        session.execute(
            update(Transaction)
            .where(Transaction.id == txn_id)
            .values(
                review_reason="amount_mismatch",
                review_detail={"pspAmount": "5.00", "pspCurrency": "USD"},
                review_opened_at=datetime.now(UTC),
            )
        )
    started = datetime.now(UTC)
    resolved = cli("txn", "resolve", txn_id, "--status", "FAILED", "--reason", "paid 5 of 200")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    (entry,) = [e for e in trail(started) if e["action"] == "review.resolved"]
    assert entry["subject"] == txn_id
    assert (entry["brandId"], entry["environmentId"]) == (ledger.brand_id, ledger.environment_id)
    assert entry["before"] == {"status": "PG_ACCEPTED", "review": "amount_mismatch"}
    assert entry["after"]["status"] == "FAILED" and entry["after"]["note"] == "paid 5 of 200"


def test_secrets_passed_by_mistake_are_not_kept(db):
    with session_scope() as session:
        issued = create_tenant(session, key_ring(), "careless", "live")
        audit.record(
            session,
            "cli tester@host",
            "test.careless",
            issued.environment_id,
            {"apiKey": "pmx-plain", "tokenId": 7, "revokedAt": "2026-01-01T00:00:00+00:00"},
            {"note": f"the token is {issued.token}", "secret": issued.notification_secret},
        )
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "test.careless")
        ).one()
        assert entry.before == {
            "apiKey": "***",
            "tokenId": 7,  # an id or a time of a secret is no secret
            "revokedAt": "2026-01-01T00:00:00+00:00",
        }
        assert entry.after == {"note": "the token is ***", "secret": "***"}
        # The tenant is found from the subject's id.
        assert entry.environment_id == issued.environment_id
        assert session.get(Environment, issued.environment_id).brand_id == entry.brand_id


def test_the_trail_survives_what_it_names(db):
    """No foreign keys: removing a tenant (as the test fixtures do) leaves its entries."""
    with session_scope() as session:
        issued = create_tenant(session, key_ring(), "ephemeral", "live")
        audit.record(session, "cli tester@host", "test.ephemeral", issued.environment_id)
    with get_engine().begin() as conn:
        conn.execute(
            text("DELETE FROM api_tokens WHERE environment_id = :e"), {"e": issued.environment_id}
        )
        conn.execute(text("DELETE FROM environments WHERE id = :e"), {"e": issued.environment_id})
    with session_scope() as session:
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == "test.ephemeral"))
            .one()
            .environment_id
            == issued.environment_id
        )
