"""The in-process tests' own guarantee: what task logic commits there is never committed."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from state_machine import Status
from storage.db import get_engine
from tests.support.rollback import Ledger


@pytest.mark.usefixtures("rolled_back")
def test_what_a_test_commits_is_seen_inside_it_and_by_nobody_else():
    txn_id = Ledger.open().deposit(Status.CREATED)  # committed by session_scope
    assert Ledger.status(txn_id) is Status.CREATED
    with get_engine().connect() as outside:  # the process's own pool, another connection
        query = text("SELECT count(*) FROM transactions WHERE id = :id")
        assert outside.execute(query, {"id": txn_id}).scalar_one() == 0
