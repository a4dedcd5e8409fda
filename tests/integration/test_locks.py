"""The per-transaction lock against real Redis: exclusive, kept alive, freed on exit."""

from __future__ import annotations

import secrets
import time

import pytest

from connxt.redis import get_redis
from connxt.settings import get_settings
from workers.locks import LockBusy, transaction_lock


@pytest.fixture
def short_ttl(monkeypatch):
    monkeypatch.setattr(get_settings(), "lock_ttl_seconds", 1)


def test_second_holder_is_refused_and_lock_frees_on_exit(redis_client):
    txn_id = f"txn_{secrets.token_hex(6)}"
    with transaction_lock(txn_id), pytest.raises(LockBusy), transaction_lock(txn_id):
        pass
    with transaction_lock(txn_id):
        pass  # free again


def test_lock_outlives_its_ttl_while_the_holder_works(redis_client, short_ttl):
    txn_id = f"txn_{secrets.token_hex(6)}"
    with transaction_lock(txn_id):
        time.sleep(2.5)  # a slow PSP call, longer than the 1 s TTL
        with pytest.raises(LockBusy), transaction_lock(txn_id):
            pass
    assert get_redis().get(f"lock:txn:{txn_id}") is None


def test_a_batch_takes_the_free_locks_and_reports_the_busy_ones(redis_client, short_ttl):
    from workers.locks import transaction_locks

    ids = [f"txn_{secrets.token_hex(6)}" for _ in range(4)]
    with transaction_lock(ids[1]), transaction_locks(ids) as (held, busy):
        assert held == [ids[0], ids[2], ids[3]] and busy == [ids[1]]
        time.sleep(2.5)  # past the 1 s TTL: the keeper extends every lock the batch holds
        for txn_id in held:
            with pytest.raises(LockBusy), transaction_lock(txn_id):
                pass
    for txn_id in ids:
        assert get_redis().get(f"lock:txn:{txn_id}") is None
