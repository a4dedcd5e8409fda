"""Webhooks applied as a set (workers.webhooks) against the real stack: a burst of
verified notifications moves every transaction once, in order, with one merchant
notification each, on the first attempt (not through a re-drive after a failure)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from storage.db import session_scope
from tests.integration.test_callbacks import (  # noqa: F401  (fixtures)
    completed,
    deposit,
    merchant,
    paymaxis,
    payment_of,
    signed_webhook,
)
from tests.support.flows import V2, events
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


def inbox_rows(txn_ids: list[str]) -> list[tuple]:
    with session_scope() as session:
        return session.execute(
            text("SELECT txn_id, attempts, result FROM inbox WHERE txn_id = ANY(:ids)"),
            {"ids": txn_ids},
        ).all()


def test_a_burst_of_completions_is_applied_as_a_set_first_time(api, stack, paymaxis):  # noqa: F811
    headers, flow_target, psp, credential = paymaxis
    txn_ids = [deposit(api, headers, flow_target, psp)["txnId"] for _ in range(12)]
    bodies = [signed_webhook(credential, completed(payment_of(stack, t)["id"], t)) for t in txn_ids]
    url = f"{stack.api_url}{V2}/external/webhooks/{psp['id']}"
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda bh: httpx.post(url, content=bh[0], headers=bh[1]), bodies))
    assert {c.status_code for c in codes} == {200}
    # Well inside the inbox re-drive's 5 s: the set path applied them itself.
    rows = wait_until(
        lambda: (r := inbox_rows(txn_ids)) and all(x.result for x in r) and r,
        timeout=4,
        what="every notification processed",
    )
    assert {(x.attempts, x.result) for x in rows} == {(1, "SUCCESS")}
    for txn_id in txn_ids:
        assert events(api, headers, txn_id)[-1] == ("PG_ACCEPTED", "SUCCESS")
    with session_scope() as session:
        notified = session.execute(
            text(
                "SELECT count(*), count(DISTINCT txn_id) FROM notifications"
                " WHERE txn_id = ANY(:ids) AND event_type = 'transaction.success'"
            ),
            {"ids": txn_ids},
        ).one()
    assert tuple(notified) == (12, 12)
