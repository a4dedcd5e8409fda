"""Moving sealed values onto the key ring's primary key, so an older key can leave the ring.

Every value sealed at rest is listed in ``SEALED``: PSP credentials and merchant
notification secrets (the current one, and a rotation's previous one). The console's
session cookie is sealed too but never stored: it lasts hours, and a session sealed under
a key that left the ring is simply signed out.

``reseal_batch`` takes a batch of rows sealed under any other key than the primary, in
one short transaction: the rows are locked (``FOR UPDATE SKIP LOCKED``: a row the service
is writing is left for the next pass), each value is opened and sealed again under the
primary with the same associated data, and written back only if it is still the value
that was read (compare-and-set). A reader at any moment finds either the old value, under
a key every process still has, or the new one, under the primary every process has (the
ring's primary must be deployed everywhere before a reseal starts: it seals new values
already). Each batch commits on its own, so a run that is killed has lost nothing and the
next run continues with what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from connxt.secrets import KeyRing, KeyRingError, Sealed
from storage.psps import credential_aad
from storage.tenants import notification_secret_aad


@dataclass(frozen=True)
class SealedColumn:
    """Where one kind of sealed value lives: a table's key id and ciphertext columns, and
    the associated data its row binds it to."""

    name: str
    table: str
    key_column: str
    blob_column: str
    aad: Callable[[str], bytes]  # the row's id -> associated data


SEALED = (
    SealedColumn(
        "psp credentials", "psps", "credential_key_id", "credential_sealed", credential_aad
    ),
    SealedColumn(
        "notification secrets",
        "environments",
        "notification_secret_key_id",
        "notification_secret_sealed",
        notification_secret_aad,
    ),
    SealedColumn(
        "previous notification secrets",
        "environments",
        "notification_secret_previous_key_id",
        "notification_secret_previous_sealed",
        notification_secret_aad,
    ),
)


def key_usage_of(session: Session) -> dict[str, dict[str, int]]:
    """``key_usage`` in the session's transaction."""
    return key_usage(session.connection())


def key_usage(conn: Connection) -> dict[str, dict[str, int]]:
    """``{column name: {key id: values sealed under it}}``."""
    usage: dict[str, dict[str, int]] = {}
    for column in SEALED:
        rows = conn.exec_driver_sql(
            f"SELECT {column.key_column}, count(*) FROM {column.table} "
            f"WHERE {column.key_column} IS NOT NULL AND {column.blob_column} IS NOT NULL "
            f"GROUP BY 1"
        ).all()
        usage[column.name] = {key_id: count for key_id, count in rows}
    return usage


def reseal_batch(
    conn: Connection, ring: KeyRing, column: SealedColumn, after_id: str, batch: int
) -> tuple[int, list[str], str | None]:
    """One batch of ``column``'s rows sealed under another key than the primary, with ids
    after ``after_id``: (values resealed, ids that did not open, the last id read; None
    when there were no more rows). The caller commits."""
    rows = conn.exec_driver_sql(
        f"SELECT id, {column.key_column}, {column.blob_column} FROM {column.table} "
        f"WHERE {column.key_column} IS NOT NULL AND {column.blob_column} IS NOT NULL "
        f"AND {column.key_column} <> %(primary)s AND id > %(after)s "
        f"ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED",
        {"primary": ring.primary, "after": after_id, "batch": batch},
    ).all()
    if not rows:
        return 0, [], None
    resealed, unreadable = 0, []
    for row_id, key_id, blob in rows:
        aad = column.aad(row_id)
        try:
            plain = ring.open(Sealed(key_id, bytes(blob)), aad)
        except KeyRingError:
            unreadable.append(row_id)
            continue
        sealed = ring.seal(plain, aad)
        updated = conn.exec_driver_sql(
            f"UPDATE {column.table} SET {column.key_column} = %(new_key)s, "
            f"{column.blob_column} = %(new_blob)s "
            f"WHERE id = %(id)s AND {column.key_column} = %(old_key)s "
            f"AND {column.blob_column} = %(old_blob)s",
            {
                "new_key": sealed.key_id,
                "new_blob": sealed.blob,
                "id": row_id,
                "old_key": key_id,
                "old_blob": bytes(blob),
            },
        ).rowcount
        resealed += updated
    return resealed, unreadable, rows[-1][0]
