"""Idempotency keys: what a request with an `Idempotency-Key` left, per environment.

A key's row names the resource its request created (written in the same database
transaction as the resource, so it never points at nothing), or the answer it was given.
The unique (environment, key) decides between two racing requests: the second insert does
nothing. The request rules around it are the ingress's (api_gateway.idempotency); the
group commit stores a key with its transaction in one statement (storage.transaction_writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from storage.models import IdempotencyKey


@dataclass(frozen=True)
class KeyUse:
    """One request's use of a key: its environment, the key, and the request's digest."""

    environment_id: str
    key: str
    digest: str


@dataclass(frozen=True)
class Found:
    digest: str
    response_code: int | None
    response_body: str | None  # the answer's JSON, as PostgreSQL's jsonb writes it
    resource_id: str | None


def find(session: Session, environment_id: str, key: str) -> Found | None:
    row = session.execute(
        select(
            IdempotencyKey.request_sha256,
            IdempotencyKey.response_code,
            cast(IdempotencyKey.response_body, Text),
            IdempotencyKey.resource_id,
        ).where(IdempotencyKey.environment_id == environment_id, IdempotencyKey.key == key)
    ).first()
    return None if row is None else Found(*row)


def _insert(session: Session, use: KeyUse, **values: Any) -> bool:
    """Write the key's row; False when another request's row is already there."""
    return (
        session.execute(
            insert(IdempotencyKey)
            .values(
                environment_id=use.environment_id,
                key=use.key,
                request_sha256=use.digest,
                **values,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        ).first()
        is not None
    )


def link_resource(session: Session, use: KeyUse, resource_id: str) -> bool:
    """Bind the key to what the caller's transaction creates; False when another request
    holds the key already (the caller then rolls back: nothing is created twice)."""
    return _insert(session, use, resource_id=resource_id)


def store_refusal(session: Session, use: KeyUse, status_code: int, body: dict[str, Any]) -> None:
    """A refused request is an answer too: the same key replays the same refusal. Nothing
    is written when the key is taken already."""
    _insert(session, use, response_code=status_code, response_body=body)


def store_answer(session: Session, use: KeyUse, status_code: int, raw_body: bytes) -> None:
    """The answer given for the key (its own JSON text), unless the key was used with
    another request meanwhile."""
    # Parsed by PostgreSQL: jsonb keeps a number's digits (`12.50`), where a round trip
    # through Python's json would make it a float (`12.5`).
    body = cast(bindparam(None, raw_body.decode(), type_=Text), JSONB)
    session.execute(
        insert(IdempotencyKey)
        .values(
            environment_id=use.environment_id,
            key=use.key,
            request_sha256=use.digest,
            response_code=status_code,
            response_body=body,
        )
        .on_conflict_do_update(
            index_elements=["environment_id", "key"],
            set_={"response_code": status_code, "response_body": body},
            where=IdempotencyKey.request_sha256 == use.digest,
        )
    )
