"""`connxt keys check` and `connxt keys reseal`: does the ring open what is stored, what
still needs an older key, and moving everything onto the primary key so that key can go.

Retiring a key: put the new key first in CONNXT_ENCRYPTION_KEYS, the old one after it, on
every process; run `connxt keys reseal` (resumable, safe while the service runs); when
`connxt keys check` says no value needs the old key, remove it from the ring.
"""

from __future__ import annotations

import json
import sys

from commands.audit import cli_actor
from commands.exits import KEY_MISMATCH as KEY_MISMATCH_EXIT
from commands.exits import fail
from connxt.secrets import key_mismatch_message, key_ring
from connxt.settings import get_settings
from storage import audit
from storage.db import get_engine, session_scope
from storage.key_check import opens_what_is_stored
from storage.resealing import SEALED, key_usage_of, reseal_batch


def _older(usage: dict[str, dict[str, int]], primary: str) -> dict[str, int]:
    """Values per key id other than the primary, over every kind of sealed value."""
    older: dict[str, int] = {}
    for by_key in usage.values():
        for key_id, count in by_key.items():
            if key_id != primary:
                older[key_id] = older.get(key_id, 0) + count
    return older


def check(as_json: bool) -> int:
    ring = key_ring()
    with session_scope() as session:
        fits = opens_what_is_stored(session, ring)
        usage = key_usage_of(session)
    older = _older(usage, ring.primary)
    if as_json:
        print(
            json.dumps(
                {
                    "opens": fits,
                    "primary": ring.primary,
                    "fingerprint": ring.fingerprint(),
                    "byKey": usage,
                    "needOlderKeys": older,
                }
            )
        )
    if not fits:
        if not as_json:
            print(key_mismatch_message(get_settings()), file=sys.stderr)
        return KEY_MISMATCH_EXIT
    if as_json:
        return 0
    print(f"key {ring.fingerprint()} opens what the database holds")
    if older:
        named = ", ".join(f"{count} under {key_id!r}" for key_id, count in sorted(older.items()))
        print(
            f"{sum(older.values())} sealed values still need an older key ({named}): "
            f"`connxt keys reseal` moves them to {ring.primary!r}"
        )
    else:
        print(
            f"every sealed value is under the primary key {ring.primary!r}: any other key "
            "can leave CONNXT_ENCRYPTION_KEYS"
        )
    return 0


def reseal(batch: int, as_json: bool) -> int:
    """Seal again under the primary key every value sealed under another, a batch per
    transaction; the exit status is 0 when none is left."""
    if batch < 1:
        return fail("--batch must be at least 1")
    ring, engine = key_ring(), get_engine()
    with session_scope() as session:
        before = _older(key_usage_of(session), ring.primary)
        audit.record(
            session,
            cli_actor(),
            "keys.reseal_started",
            "key ring",
            {"valuesUnderOlderKeys": before},
            {"primary": ring.primary},
        )
    resealed: dict[str, int] = {}
    unreadable: list[str] = []
    for column in SEALED:
        resealed[column.name], after = 0, ""
        while True:
            with engine.begin() as conn:
                done, bad, last = reseal_batch(conn, ring, column, after, batch)
            if last is None:
                break
            resealed[column.name] += done
            unreadable += [f"{column.table} {row_id}" for row_id in bad]
            after = last
    with session_scope() as session:
        left = _older(key_usage_of(session), ring.primary)
        audit.record(
            session,
            cli_actor(),
            "keys.resealed",
            "key ring",
            {"valuesUnderOlderKeys": before},
            {"primary": ring.primary, "resealed": resealed, "valuesUnderOlderKeys": left},
        )
    if as_json:
        print(
            json.dumps(
                {
                    "primary": ring.primary,
                    "resealed": resealed,
                    "needOlderKeys": left,
                    "unreadable": unreadable,
                }
            )
        )
    else:
        for name, count in resealed.items():
            print(f"{name}: {count} resealed under {ring.primary!r}")
        for row in unreadable:
            print(f"does not open with this ring, left as it is: {row}")
    if left:
        if not as_json:
            print(
                f"{sum(left.values())} values still need an older key (written meanwhile by a "
                "process without the new primary, busy, or unreadable): run it again",
                file=sys.stderr,
            )
        return 1
    if not as_json:
        print("nothing needs an older key: it can leave CONNXT_ENCRYPTION_KEYS")
    return 0
