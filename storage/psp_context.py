"""What a task or a request needs to talk to a transaction's PSP: its connector and open
credential, read in one query and kept for seconds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Connector
from connectors.registry import get_connector
from connxt.secrets import key_ring
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage.models import FlowTarget, Psp
from storage.psps import open_credential


@dataclass(frozen=True)
class PspContext:
    psp_id: str
    connector: Connector
    credential: dict[str, Any]


def find_psp_context(session: Session, psp_id: str) -> PspContext | None:
    """The PSP's connector and open credential, in one query; None for an unknown PSP."""
    row = session.execute(
        select(Psp, FlowTarget.name)
        .join(FlowTarget, FlowTarget.id == Psp.flow_target_id)
        .where(Psp.id == psp_id)
    ).one_or_none()
    if row is None:
        return None
    psp, target_name = row
    return PspContext(psp.id, get_connector(target_name), open_credential(key_ring(), psp))


# Open credentials are kept for seconds: reading and decrypting them for every payment
# would cost a query and an AES open each. A rotated credential is used within this bound.
_contexts: TtlCache[str, PspContext] = TtlCache(get_settings().psp_cache_seconds)


def load_psp_context(session: Session, psp_id: str) -> PspContext:
    """As find_psp_context, for a PSP a stored transaction already names."""
    context = _contexts.get_or_load(psp_id, lambda: find_psp_context(session, psp_id))
    if context is None:
        raise LookupError(f"no PSP {psp_id}")
    return context


def psp_contexts(session: Session, psp_ids: Iterable[str]) -> dict[str, PspContext | None]:
    """As load_psp_context for each PSP account; None for one that is not there."""
    return {
        psp_id: _contexts.get_or_load(psp_id, partial(find_psp_context, session, psp_id))
        for psp_id in set(psp_ids)
    }
