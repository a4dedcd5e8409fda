"""PSP accounts whose webhooks cannot be verified: their connector verifies with a key the
credential may leave out (``webhook_signing_field``), and theirs has none.

The key is required only when a credential is written in production, so an account made in
development, or before that rule, still has none. Production refuses its unsigned webhooks
(connectors.paymaxis); `connxt psps check` lists such accounts and /readyz counts them, so
an operator adds the key before the PSP's retries run out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.registry import all_connectors
from connxt.secrets import KeyRing
from storage.directory import environment_labels
from storage.models import FlowTarget, Psp
from storage.psps import open_credential


@dataclass(frozen=True)
class UnsignedAccount:
    psp_id: str
    name: str
    connector: str
    tenant: str  # "brand / environment"
    field: str  # the credential field that is missing


def _signing_fields() -> dict[str, str]:
    """Flow target name → the credential field holding its webhook signing key."""
    fields = {}
    for name, connector in all_connectors().items():
        field = getattr(connector, "webhook_signing_field", None)
        if field:
            fields[name] = field
    return fields


def unsigned_accounts(session: Session, ring: KeyRing) -> list[UnsignedAccount]:
    """Every tenant's accounts without their webhook signing key, oldest first. Only the
    credentials of connectors that take such a key are opened."""
    fields = _signing_fields()
    if not fields:
        return []
    # Columns, not ORM objects: at thousands of accounts, building objects cost more than
    # opening the credentials.
    rows = session.execute(
        select(
            Psp.id,
            Psp.name,
            Psp.environment_id,
            Psp.credential_key_id,
            Psp.credential_sealed,
            FlowTarget.name.label("target"),
        )
        .join(FlowTarget, FlowTarget.id == Psp.flow_target_id)
        .where(FlowTarget.name.in_(sorted(fields)))
        .order_by(Psp.created_at, Psp.id)
    ).all()
    missing = [row for row in rows if not open_credential(ring, row).get(fields[row.target])]
    tenants = environment_labels(session, [row.environment_id for row in missing])
    return [
        UnsignedAccount(
            row.id, row.name, row.target, tenants.get(row.environment_id, ""), fields[row.target]
        )
        for row in missing
    ]
