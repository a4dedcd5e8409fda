"""PSP accounts of a tenant and their operations. Every query takes the tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connxt.ids import random_id
from connxt.secrets import KeyRing, Sealed
from storage.models import Psp, PspOperation

# The fields of an account its tenant may change (``change_psp``).
CHANGEABLE = ("name", "description", "logo", "status")


class NameTaken(Exception):
    """The tenant has another account of this name for the same flow target."""


def credential_aad(psp_id: str) -> bytes:
    # Bound to the PSP id: a ciphertext copied onto another PSP row does not open.
    return f"psp-credential:{psp_id}".encode()


def seal_credential(ring: KeyRing, psp: Psp, credential: dict[str, Any]) -> None:
    sealed = ring.seal(
        json.dumps(credential, separators=(",", ":")).encode(), credential_aad(psp.id)
    )
    psp.credential_key_id, psp.credential_sealed = sealed.key_id, sealed.blob


class SealedCredential(Protocol):
    """What opening a credential reads: a Psp, or a row of just these columns
    (storage.psp_signing reads thousands without building objects)."""

    @property
    def id(self) -> str: ...
    @property
    def credential_key_id(self) -> str: ...
    @property
    def credential_sealed(self) -> bytes: ...


def open_credential(ring: KeyRing, psp: SealedCredential) -> dict[str, Any]:
    plain = ring.open(Sealed(psp.credential_key_id, psp.credential_sealed), credential_aad(psp.id))
    credential: dict[str, Any] = json.loads(plain)  # sealed by seal_credential: an object
    return credential


def get_psp(session: Session, brand_id: str, environment_id: str, psp_id: str) -> Psp | None:
    return session.scalar(
        select(Psp).where(
            Psp.id == psp_id, Psp.brand_id == brand_id, Psp.environment_id == environment_id
        )
    )


@dataclass(frozen=True)
class PspSnapshot:
    """What validating a transaction needs of a PSP account, read in one query."""

    id: str
    brand_id: str
    environment_id: str
    flow_target_id: str
    status: str
    operation_status: dict[str, str]  # flow action id -> ENABLED | DISABLED


def load_snapshot(
    session: Session, brand_id: str, environment_id: str, psp_id: str
) -> PspSnapshot | None:
    rows = session.execute(
        select(
            Psp.id, Psp.flow_target_id, Psp.status, PspOperation.flow_action_id, PspOperation.status
        )
        .outerjoin(PspOperation, PspOperation.psp_id == Psp.id)
        .where(Psp.id == psp_id, Psp.brand_id == brand_id, Psp.environment_id == environment_id)
    ).all()
    if not rows:
        return None
    first = rows[0]
    return PspSnapshot(
        id=first[0],
        brand_id=brand_id,
        environment_id=environment_id,
        flow_target_id=first[1],
        status=first[2],
        operation_status={row[3]: row[4] for row in rows if row[3] is not None},
    )


def list_psps(session: Session, brand_id: str, environment_id: str) -> list[Psp]:
    return list(
        session.scalars(
            select(Psp)
            .where(Psp.brand_id == brand_id, Psp.environment_id == environment_id)
            .order_by(Psp.created_at, Psp.id)
        )
    )


def operations_of(session: Session, psp_ids: list[str]) -> dict[str, list[PspOperation]]:
    out: dict[str, list[PspOperation]] = {pid: [] for pid in psp_ids}
    rows = session.scalars(
        select(PspOperation)
        .where(PspOperation.psp_id.in_(psp_ids))
        .order_by(PspOperation.psp_id, PspOperation.position)
    )
    for op in rows:
        out[op.psp_id].append(op)
    return out


def replace_operations(session: Session, psp_id: str, operations: list[dict[str, str]]) -> None:
    session.execute(delete(PspOperation).where(PspOperation.psp_id == psp_id))
    session.add_all(
        PspOperation(
            psp_id=psp_id,
            flow_action_id=op["flowActionId"],
            flow_definition_id=op["flowDefinitionId"],
            status=op["status"],
            position=i,
        )
        for i, op in enumerate(operations)
    )


def _flush_or_name_taken(session: Session) -> None:
    # The unique constraint decides, not a prior SELECT: two racing creates cannot both win.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if "uq_psps_tenant_target_name" in str(exc.orig):
            raise NameTaken from None
        raise


def add_psp(
    session: Session,
    ring: KeyRing,
    *,
    brand_id: str,
    environment_id: str,
    flow_target_id: str,
    name: str,
    description: str | None,
    logo: str | None,
    credential: dict[str, Any],
    operations: list[dict[str, str]],
) -> Psp:
    """A new, enabled account with its credential sealed and its operations, written in the
    caller's transaction; NameTaken when the name is the tenant's already."""
    now = datetime.now(UTC)
    psp = Psp(
        id=random_id("psp"),
        brand_id=brand_id,
        environment_id=environment_id,
        flow_target_id=flow_target_id,
        name=name,
        description=description,
        logo=logo,
        status="ENABLED",
        created_by=environment_id,
        updated_by=environment_id,
        created_at=now,
        updated_at=now,
    )
    seal_credential(ring, psp, credential)
    session.add(psp)
    _flush_or_name_taken(session)
    replace_operations(session, psp.id, operations)
    return psp


def change_psp(
    session: Session,
    ring: KeyRing,
    psp: Psp,
    *,
    changes: dict[str, Any],
    credential: dict[str, Any] | None,
    operations: list[dict[str, str]] | None,
    updated_by: str,
) -> None:
    """Apply ``changes`` (of ``CHANGEABLE``), a new credential and a new list of operations
    (None: kept) in the caller's transaction; NameTaken when the new name is taken."""
    if credential is not None:
        seal_credential(ring, psp, credential)
    if operations is not None:
        replace_operations(session, psp.id, operations)
    for field, value in changes.items():
        if field not in CHANGEABLE:
            raise ValueError(f"{field} is not a field a tenant changes")
        setattr(psp, field, value)
    psp.updated_at = datetime.now(UTC)
    psp.updated_by = updated_by
    _flush_or_name_taken(session)
