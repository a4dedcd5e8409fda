"""PSP accounts as the hot paths read them, remembered for a few seconds.

Step 3 validates against a PSP's status and operations, and the webhook endpoint verifies
with its connector and open credential; reading (and decrypting) them for every request
would cost more than the request. A change through this process's API (PATCH) is seen at
once here; other ingress processes see it within ``CONNXT_PSP_CACHE_SECONDS``. The PSP's
flow target is not kept with it but read from the catalog's own cache on every request, so a
target or action disabled by an operator is refused within ``CONNXT_CATALOG_CACHE_SECONDS``,
not within the sum of both lifetimes.

The webhook door takes requests from anyone, so what a stranger can make it read is bounded:
an id no PSP has is remembered as unknown (a repeat costs no query), and a bad signature
reloads a real PSP's context at most once per ``RELOAD_INTERVAL_SECONDS`` (a flood of forged
webhooks against a real PSP, whose id is public in a Sticpay page's callback URL, costs one
query and one decryption per interval, and its genuine webhooks keep verifying with the
context already held). One read per id is in flight at a time; concurrent requests for the
same id wait for it.
"""

from __future__ import annotations

import asyncio
import itertools

from fastapi.concurrency import run_in_threadpool

from api_gateway.auth import Tenant
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage.catalog import TargetRow, cached_target, peek_target
from storage.db import session_scope
from storage.psp_context import PspContext, find_psp_context
from storage.psps import PspSnapshot, load_snapshot

_TTL = get_settings().psp_cache_seconds
_for_transactions: TtlCache[tuple[str, str], PspSnapshot] = TtlCache(_TTL)
_for_webhooks: TtlCache[str, PspContext] = TtlCache(_TTL)
# Ids no PSP has, in a cache of their own so that a flood of made-up ids cannot push the real
# PSPs' contexts out. A PSP's id is random and made when it is created, so only a PSP created
# meanwhile could turn an unknown id into a known one: one created through this process is
# forgotten here at once (``created``); one created through another is found within this
# lifetime, the bound on any change made elsewhere.
UNKNOWN_SECONDS = _TTL
_unknown: TtlCache[str, bool] = TtlCache(UNKNOWN_SECONDS, max_items=50_000)
# A bad signature may mean the key was rotated through another process, so it may reload the
# context: not again within this interval of the last read of it.
RELOAD_INTERVAL_SECONDS = 1.0
_read_recently: TtlCache[str, bool] = TtlCache(RELOAD_INTERVAL_SECONDS)
_reading: dict[str, asyncio.Future[PspContext | None]] = {}
# Bumped by every change made through this process: a read that started before it does not
# remember what it found (it may predate the change).
_changes = itertools.count(1)
_last_change = 0


def _load_for_transactions(tenant: Tenant, psp_id: str) -> tuple[PspSnapshot, TargetRow] | None:
    with session_scope() as session:
        psp = load_snapshot(session, tenant.brand_id, tenant.environment_id, psp_id)
        target = cached_target(session, psp.flow_target_id) if psp is not None else None
    return None if psp is None or target is None else (psp, target)


async def psp_for_transaction(
    tenant: Tenant, psp_id: str
) -> tuple[PspSnapshot | None, TargetRow | None]:
    """The tenant's PSP and its flow target; (None, None) when the tenant has no such PSP."""
    key = (tenant.environment_id, psp_id)
    psp = _for_transactions.get(key)
    target = peek_target(psp.flow_target_id) if psp is not None else None
    if psp is None or target is None:
        found = await run_in_threadpool(_load_for_transactions, tenant, psp_id)
        if found is None:
            return None, None
        psp, target = found
        _for_transactions.put(key, psp)
    return psp, target


def _load_context(psp_id: str) -> PspContext | None:
    with session_scope() as session:
        return find_psp_context(session, psp_id)


async def psp_for_webhook(psp_id: str) -> PspContext | None:
    """The PSP's connector and open credential, to verify a notification with; None for an
    id no PSP has."""
    context = _for_webhooks.get(psp_id)
    if context is None and not _unknown.get(psp_id):
        context = await _read(psp_id)
    return context


async def reread_for_webhook(psp_id: str) -> PspContext | None:
    """The context read afresh after a bad signature, or None when it was read within the
    interval (nothing newer to verify with)."""
    if _read_recently.get(psp_id):
        return None
    return await _read(psp_id)


async def _read(psp_id: str) -> PspContext | None:
    pending = _reading.get(psp_id)
    if pending is None:
        pending = asyncio.ensure_future(_read_and_remember(psp_id))
        _reading[psp_id] = pending
        pending.add_done_callback(lambda _: _reading.pop(psp_id, None))
    # Shielded: a request that goes away does not cancel the read others wait for.
    return await asyncio.shield(pending)


async def _read_and_remember(psp_id: str) -> PspContext | None:
    started_after = _last_change
    context = await run_in_threadpool(_load_context, psp_id)
    if started_after == _last_change:
        if context is None:
            _unknown.put(psp_id, True)
        else:
            _for_webhooks.put(psp_id, context)
            _read_recently.put(psp_id, True)
    return context


def _changed() -> None:
    global _last_change
    _last_change = next(_changes)


def created(psp_id: str) -> None:
    """A PSP created through this process: its id is no longer unknown here."""
    _changed()
    _unknown.discard(psp_id)


def forget(tenant: Tenant, psp_id: str) -> None:
    """A PSP changed through this process: the next request reads it afresh."""
    _changed()
    _for_transactions.discard((tenant.environment_id, psp_id))
    _for_webhooks.discard(psp_id)


def forget_cached_psps() -> None:
    """Drop everything this process remembers about PSPs (tests, operations)."""
    _changed()
    for remembered in (_for_transactions, _for_webhooks, _unknown, _read_recently):
        remembered.clear()
