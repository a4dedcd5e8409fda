"""PSP accounts of a tenant and their operations. Every query takes the tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connxt.secrets import KeyRing, Sealed
from storage.models import Psp, PspOperation


def _aad(psp_id: str) -> bytes:
    # Bound to the PSP id: a ciphertext copied onto another PSP row does not open.
    return f"psp-credential:{psp_id}".encode()


def seal_credential(ring: KeyRing, psp: Psp, credential: dict[str, Any]) -> None:
    sealed = ring.seal(json.dumps(credential, separators=(",", ":")).encode(), _aad(psp.id))
    psp.credential_key_id, psp.credential_sealed = sealed.key_id, sealed.blob


def open_credential(ring: KeyRing, psp: Psp) -> dict[str, Any]:
    plain = ring.open(Sealed(psp.credential_key_id, psp.credential_sealed), _aad(psp.id))
    return json.loads(plain)


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
