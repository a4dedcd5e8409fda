"""The audit trail: every administrative act, who did it, when, to what, before and after.

One row per act, written in the database transaction of the act itself (so neither exists
without the other), never changed afterwards: the table refuses UPDATE, DELETE and
TRUNCATE (migration 0008), whatever the code tries.

Callers name the act with a dotted ``action`` (``tenant.created``, ``token.revoked``,
``psp.updated``, ``review.resolved``, ...) and what it was done to (``subject``: an id).
The tenant an entry belongs to is found from the subject's id where it names a
transaction, PSP account or environment, so a tenant's console shows its own entries
without every caller passing the scope. ``before`` and ``after`` go through the log
redaction on the way in: a secret-named field or a secret-looking value is stored as
``***`` even if a caller passed one by mistake (ids and times of secrets stay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connxt.logging import redact
from storage.models import AuditEntry, Environment, Psp, Transaction

Scope = tuple[str, str] | None  # (brand id, environment id); None: every tenant


def record(
    session: Session,
    actor: str,
    action: str,
    subject: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    scope: Scope = None,
) -> None:
    """Append one entry. ``scope``: the tenant it concerns, when the subject's id does not
    say (a brand's customer, an environment named by its names)."""
    brand_id, environment_id = scope or _scope_of(session, subject)
    session.add(
        AuditEntry(
            actor=actor[:200],
            action=action,
            subject=subject,
            brand_id=brand_id,
            environment_id=environment_id,
            before=_without_secrets(before),
            after=_without_secrets(after),
        )
    )
    session.flush()


# Fields that name or date a secret rather than hold one: kept as they are.
_ABOUT_A_SECRET = ("Id", "At", "Until", "Seconds")


def _without_secrets(value: Any, key: str | None = None) -> Any:
    """The log redaction (secret-named fields, secret-looking values, e-mail addresses,
    secret ``name=value`` pairs), except that a field naming or dating a secret
    (``tokenId``, ``revokedAt``) keeps its value."""
    if isinstance(value, dict):
        return {k: _without_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    if key is not None and key.endswith(_ABOUT_A_SECRET):
        key = None
    return redact(value, key, for_log=True)


def _scope_of(session: Session, subject: str | None) -> tuple[str | None, str | None]:
    """The tenant of a transaction, PSP account or environment id; none for anything else
    (the catalog, the key ring: acts on the whole service)."""
    if not subject:
        return None, None
    if subject.startswith("txn_"):
        query = select(Transaction.brand_id, Transaction.environment_id).where(
            Transaction.id == subject
        )
    elif subject.startswith("psp_"):
        query = select(Psp.brand_id, Psp.environment_id).where(Psp.id == subject)
    elif subject.startswith("env_"):
        query = select(Environment.brand_id, Environment.id).where(Environment.id == subject)
    else:
        return None, None
    row = session.execute(query).first()
    return (row[0], row[1]) if row else (None, None)


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    brand_id: str | None
    environment_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "brandId": self.brand_id,
            "environmentId": self.environment_id,
            "before": self.before,
            "after": self.after,
        }


def entries(
    session: Session,
    scope: Scope = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
    oldest_first: bool = False,
) -> list[Entry]:
    """Entries of one tenant (``scope``) or of all (None): newest first, older than
    ``before_id`` (the next page); or with ``oldest_first``, from ``since`` on."""
    query = select(AuditEntry)
    if scope is not None:
        query = query.where(AuditEntry.brand_id == scope[0], AuditEntry.environment_id == scope[1])
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    order = AuditEntry.id.asc() if oldest_first else AuditEntry.id.desc()
    return [
        Entry(
            r.id,
            r.at,
            r.actor,
            r.action,
            r.subject,
            r.brand_id,
            r.environment_id,
            r.before,
            r.after,
        )
        for r in session.scalars(query.order_by(order).limit(limit))
    ]
