"""`connxt customers erase`: an erasure request for one customer of a brand, answered at
once (storage.personal_data) and recorded in the audit trail."""

from __future__ import annotations

import json

from commands.audit import cli_actor
from commands.exits import NOT_FOUND, fail
from storage import audit
from storage.db import session_scope
from storage.personal_data import customer_reference, erase_customer


def erase(brand: str, customer_id: str, as_json: bool) -> int:
    with session_scope() as session:
        done = erase_customer(session, brand, customer_id)
        if done is None:
            return fail(f"no brand {brand!r}", NOT_FOUND)
        # The trail names the customer by a digest: it must not keep what it records erasing.
        audit.record(
            session,
            cli_actor(),
            "customer.erased",
            customer_reference(customer_id),
            None,
            {"brand": brand, "redacted": done.redacted, "pendingUntilEnded": done.pending},
        )
    if as_json:
        print(json.dumps({"redacted": done.redacted, "pending": done.pending}))
        return 0
    print(f"{done.redacted} transactions of the customer redacted")
    if done.pending:
        print(f"{done.pending} still open: each is redacted as soon as it ends")
    return 0
