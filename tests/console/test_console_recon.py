"""The console's Reconciliation page against the running stack: a day run from its button
by the worker, the run's differences linked to their transactions, one resolved with a
note; another tenant sees none of it, an operator sees every tenant's."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.console import OPERATOR_TOKEN, csrf_of, signed_in
from tests.support.flows import V2, transaction_body
from tests.support.stack import wait_until

# The console's pages and actions: the broker under its worker changes none of it.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]


def flash_of(page: str) -> str:
    found = re.search(r'<p class="flash" id="flash">([^<]*)</p>', page)
    return found.group(1) if found else ""


def test_a_day_run_from_the_page_and_a_difference_resolved(
    api, stack, console_url, merchant, make_tenant
):
    paid = api.post(
        f"{V2}/transactions",
        headers=merchant.headers,
        json=transaction_body(merchant.psp, merchant.flow_target, action="WITHDRAW", amount=40),
    ).json()["data"]
    assert paid["status"] == "SUCCESS"
    httpx.post(f"{stack.sandbox_url}/_control/settlements/inject", json={"kind": "unknown"})
    client = signed_in(console_url, merchant.issued.token, name="Ada")
    listing = client.get("/reconciliation").text
    assert f'<option value="{merchant.psp["id"]}">' in listing

    today = datetime.now(UTC).date().isoformat()
    started = client.post(
        "/reconciliation/runs",
        data={"csrf": csrf_of(listing), "psp": merchant.psp["id"], "day": today},
    )
    assert started.status_code == 303, started.text
    run_path = started.headers["location"]
    assert flash_of(client.get(run_path).text).startswith("Run queued")

    def completed() -> str | None:
        shown = client.get(run_path).text
        return shown if "COMPLETED" in shown else None

    page = wait_until(completed, timeout=60, what="the run")
    assert f'href="/transactions/{paid["txnId"]}"' not in page  # matched: no difference
    assert "missing_at_connxt" in page and "unknown to Connxt" in page
    assert "50.0%" in page  # one matched, one difference
    difference_id = re.search(r"/reconciliation/differences/(\d+)/resolve", page).group(1)

    confirm = client.get(f"/reconciliation/differences/{difference_id}/resolve")
    refused = client.post(
        f"/reconciliation/differences/{difference_id}/resolve",
        data={"csrf": csrf_of(confirm.text), "note": "  "},
    )
    assert flash_of(client.get(refused.headers["location"]).text).startswith("Not done: say why")
    done = client.post(
        f"/reconciliation/differences/{difference_id}/resolve",
        data={"csrf": csrf_of(confirm.text), "note": "a payment of the PSP's own test"},
    )
    after = client.get(done.headers["location"]).text
    assert flash_of(after) == f"Difference {difference_id} resolved"
    assert "resolved: a payment of the PSP&#39;s own test" in after
    no_csrf = client.post(
        f"/reconciliation/differences/{difference_id}/resolve", data={"note": "x"}
    )
    assert no_csrf.status_code == 403

    other, _headers = make_tenant("elsewhere", "live")
    stranger = signed_in(console_url, other.token, name="Eve")
    assert stranger.get(run_path).status_code == 404
    assert stranger.get(f"/reconciliation/differences/{difference_id}/resolve").status_code == 404
    assert run_path.rsplit("/", 1)[1] not in stranger.get("/reconciliation").text

    operator = signed_in(console_url, OPERATOR_TOKEN)
    overview = operator.get("/reconciliation").text
    assert run_path.rsplit("/", 1)[1] in overview and "<th>Tenant</th>" in overview
