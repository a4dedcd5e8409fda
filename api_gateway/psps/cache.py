"""PSP accounts as the hot paths read them, remembered for a few seconds.

Step 3 validates against a PSP's status and operations, and the webhook endpoint verifies
with its connector and open credential; reading (and decrypting) them for every request
would cost more than the request. A change through this process's API (PATCH) is seen at
once here; other ingress processes see it within ``CONNXT_PSP_CACHE_SECONDS``. The PSP's
flow target is not kept with it but read from the catalog's own cache on every request, so a
target or action disabled by an operator is refused within ``CONNXT_CATALOG_CACHE_SECONDS``,
not within the sum of both lifetimes.
"""

from __future__ import annotations

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
    """The PSP's connector and open credential, to verify a notification with."""
    context = _for_webhooks.get(psp_id)
    if context is None:
        context = await run_in_threadpool(_load_context, psp_id)
        if context is not None:
            _for_webhooks.put(psp_id, context)
    return context


def forget_webhook_context(psp_id: str) -> None:
    _for_webhooks.discard(psp_id)


def forget(tenant: Tenant, psp_id: str) -> None:
    """A PSP changed through this process: the next request reads it afresh."""
    _for_transactions.discard((tenant.environment_id, psp_id))
    forget_webhook_context(psp_id)
