"""Settlement reconciliation over the API: a merchant asks for a run of one of its PSP
accounts, a worker on the reconcile lane does it, the merchant reads runs and differences
(each answer checked against the OpenAPI document) and is notified with the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text

from connxt.metrics import OpenDifferences
from connxt.settings import get_settings
from storage.db import session_scope
from storage.models import Environment
from storage.recon import differences
from storage.recon.differences import open_stats_now
from tests.support.flows import V2, create_psp, target, transaction_body
from tests.support.recon import at, yesterday
from tests.support.stack import wait_until

# Reads the outbox and runs the sweeps itself.
pytestmark = pytest.mark.usefixtures("background_held")

RUNS = f"{V2}/reconciliation/runs"


def errors_of(answer: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in answer.json()["errors"]}


def test_asking_for_a_run_queues_it_for_the_reconcile_lane(client, tenant, books):
    headers = tenant[1]
    asked = client.post(
        RUNS, headers=headers, json={"pspId": books.psp_id, "date": str(yesterday())}
    )
    assert asked.status_code == 202, asked.text
    run = asked.json()["data"]
    assert (run["status"], run["trigger"], run["pspId"], run["date"]) == (
        "QUEUED",
        "api",
        books.psp_id,
        str(yesterday()),
    )
    assert run["summary"] is None and run["differences"] is None
    with session_scope() as session:
        message = session.execute(
            text("SELECT task, queue, args FROM outbox WHERE args->>'run_id' = :id"),
            {"id": run["id"]},
        ).one()
    assert (message.task, message.queue) == ("recon.run", "reconcile")
    again = client.post(
        RUNS,
        headers={**headers, "Idempotency-Key": "recon-1"},
        json={"pspId": books.psp_id, "date": str(yesterday())},
    )
    replay = client.post(
        RUNS,
        headers={**headers, "Idempotency-Key": "recon-1"},
        json={"pspId": books.psp_id, "date": str(yesterday())},
    )
    assert again.status_code == replay.status_code == 202
    assert again.json()["data"]["id"] == replay.json()["data"]["id"] != run["id"]


def test_refusals(client, tenant, make_tenant, books):
    headers = tenant[1]
    _other, other_headers = make_tenant("other", "test")
    missing = client.post(RUNS, headers=headers, json={"date": str(yesterday())})
    assert missing.status_code == 400 and "pspId" in errors_of(missing)
    bad_day = client.post(RUNS, headers=headers, json={"pspId": books.psp_id, "date": "2025-02-30"})
    assert bad_day.status_code == 400 and "date" in errors_of(bad_day)
    future = (datetime.now(UTC) + timedelta(days=2)).date()
    early = client.post(RUNS, headers=headers, json={"pspId": books.psp_id, "date": str(future)})
    assert early.status_code == 400 and "not begun" in errors_of(early)["date"]
    # Another tenant's account, or its runs, are not found (never forbidden).
    theirs = client.post(
        RUNS, headers=other_headers, json={"pspId": books.psp_id, "date": str(yesterday())}
    )
    assert theirs.status_code == 404
    run_id = books.new_run(yesterday())
    assert client.get(f"{RUNS}/{run_id}", headers=other_headers).status_code == 404
    assert client.get(f"{RUNS}/{run_id}/differences", headers=other_headers).status_code == 404
    assert client.get(RUNS, headers=other_headers).json()["data"]["items"] == []
    assert client.get(RUNS, headers=headers, params={"cursor": "nope"}).status_code == 400
    assert (
        client.get(
            f"{RUNS}/{run_id}/differences", headers=headers, params={"class": "odd"}
        ).status_code
        == 400
    )
    assert client.get(RUNS).status_code == 401


def test_runs_and_their_differences_as_the_merchant_reads_them(client, tenant, books, monkeypatch):

    monkeypatch.setattr(get_settings(), "recon_settlement_window_days", 30)
    headers = tenant[1]
    books.settled_txn(yesterday(), "10.00")
    short, short_paid = books.settled_txn(yesterday(), "20.00", hour=11)
    books.inject("amount", short_paid)
    twice, twice_paid = books.settled_txn(yesterday(), "30.00", hour=12)
    books.inject("duplicate", twice_paid)
    pending = books.txn("SUCCESS", at(yesterday(), 23))
    first = books.reconcile(yesterday())
    second = books.reconcile(yesterday())

    listed = client.get(RUNS, headers=headers, params={"limit": 1}).json()["data"]
    assert [r["id"] for r in listed["items"]] == [second.run_id]
    rest = client.get(RUNS, headers=headers, params={"cursor": listed["nextCursor"]}).json()["data"]
    assert [r["id"] for r in rest["items"]] == [first.run_id] and rest["nextCursor"] is None
    run = client.get(f"{RUNS}/{second.run_id}", headers=headers).json()["data"]
    assert run["status"] == "COMPLETED" and run["matched"] == 2  # the first of the twice-settled
    assert run["differences"] == {
        "amount_mismatch": 1,
        "pending": 1,
        "missing_at_psp": 0,
        "missing_at_connxt": 0,
        "status_mismatch": 0,
        "duplicate": 1,
    }
    assert run["summary"]["totals"]["USD"]["gross"] == "89.00"  # 10 + 19 + 30 + 30

    page = client.get(
        f"{RUNS}/{second.run_id}/differences", headers=headers, params={"limit": 2}
    ).json()["data"]
    more = client.get(
        f"{RUNS}/{second.run_id}/differences",
        headers=headers,
        params={"cursor": page["nextCursor"]},
    ).json()["data"]
    found = {d["class"]: d for d in page["items"] + more["items"]}
    assert set(found) == {"amount_mismatch", "duplicate", "pending"}
    assert found["amount_mismatch"]["txnId"] == short
    assert found["amount_mismatch"]["ours"] == {
        "status": "SUCCESS",
        "action": "DEPOSIT",
        "amount": "20.00",
        "currency": "USD",
    }
    assert found["amount_mismatch"]["theirs"]["gross"] == "19.00"
    assert found["amount_mismatch"]["action"] == "review"
    assert found["duplicate"]["txnId"] == twice and found["pending"]["txnId"] == pending
    assert found["pending"]["theirs"] is None and found["pending"]["state"] == "open"

    # Open money differences (pending aside) are what the alert watches, at each scrape of
    # beat's metrics (commands/processes.py); the runs' own series are this process's.
    assert "connxt_recon_open_differences 2.0" in open_differences_scraped()
    scraped = generate_latest(REGISTRY).decode()
    assert 'connxt_recon_lines_total{class="duplicate"}' in scraped
    assert 'connxt_recon_run_seconds_count{outcome="completed",psp="' in scraped
    with session_scope() as session:
        differences.resolve(
            session, None, found["duplicate"]["id"], "refund asked of the PSP", "ops"
        )
    only = client.get(
        f"{RUNS}/{second.run_id}/differences", headers=headers, params={"class": "duplicate"}
    ).json()["data"]["items"]
    assert only[0]["state"] == "resolved"
    assert only[0]["resolution"]["note"] == "refund asked of the PSP"
    assert "connxt_recon_open_differences 1.0" in open_differences_scraped()


def open_differences_scraped() -> str:
    registry = CollectorRegistry()
    registry.register(OpenDifferences(open_stats_now))
    return generate_latest(registry).decode()


@pytest.mark.integration
def test_a_worker_runs_what_the_api_queued_and_notifies_the_merchant(api, stack, make_tenant):
    issued, headers = make_tenant("reconciled", "live")
    with session_scope() as session:
        env = session.get(Environment, issued.environment_id)
        env.notification_url = f"{stack.sandbox_url}/merchant/notifications"
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, {"apiKey": "pmx_recon_api"})
    paid = api.post(
        f"{V2}/transactions",
        headers=headers,
        json=transaction_body(psp, flow_target, action="WITHDRAW", amount=75),
    ).json()["data"]
    assert paid["status"] == "SUCCESS"
    asked = api.post(
        RUNS, headers=headers, json={"pspId": psp["id"], "date": str(datetime.now(UTC).date())}
    )
    run_id = asked.json()["data"]["id"]

    def finished():
        run = api.get(f"{RUNS}/{run_id}", headers=headers).json()["data"]
        return run if run["status"] in ("COMPLETED", "FAILED") else None

    run = wait_until(finished, timeout=60, what="the run")
    assert run["status"] == "COMPLETED", run
    assert run["matched"] == 1 and not any(run["differences"].values())

    def notified():
        received = httpx.get(f"{stack.sandbox_url}/merchant/notifications").json()["notifications"]
        return next(
            (
                n
                for n in received
                if (n.get("body") or {}).get("type") == "reconciliation.completed"
                and n["body"]["data"]["runId"] == run_id
            ),
            None,
        )

    note = wait_until(notified, timeout=30, what="the merchant's notification")
    assert note["body"]["data"]["matched"] == 1
    assert note["body"]["data"]["differences"]["missing_at_connxt"] == 0
