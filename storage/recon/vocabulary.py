"""The words of settlement reconciliation, stored as their values."""

from __future__ import annotations

import enum


class Class(enum.StrEnum):
    """Where one settlement line or one transaction ends: exactly one of these."""

    MATCHED = "matched"
    """Settled for exactly our money, and ours is SUCCESS (or an adjustment accounted for)."""

    AMOUNT_MISMATCH = "amount_mismatch"
    """Settled for another amount or currency than ours (or in the other direction)."""

    PENDING = "pending"
    """Our SUCCESS, not settled yet, still inside the PSP's settlement window."""

    MISSING_AT_PSP = "missing_at_psp"
    """Our SUCCESS, not settled, and the settlement window has passed."""

    MISSING_AT_CONNXT = "missing_at_connxt"
    """Settled, for a payment we have no transaction of (on that PSP account)."""

    STATUS_MISMATCH = "status_mismatch"
    """Settled, but ours is FAILED, REJECTED or still open."""

    DUPLICATE = "duplicate"
    """Settled again: the same transaction's line a second time (that day or an earlier one)."""


DIFFERENCES = tuple(c for c in Class if c is not Class.MATCHED)
# Classes that mean money may be wrong, as opposed to "not yet": what the alert watches.
UNSETTLED = frozenset({Class.PENDING})


class RunStatus(enum.StrEnum):
    QUEUED = "QUEUED"  # asked for; a worker (or the command) will run it
    RUNNING = "RUNNING"  # fetching and matching
    COMPLETED = "COMPLETED"  # the day's result, until a later run of the day
    FAILED = "FAILED"  # the report could not be read whole: nothing of it kept
    SUPERSEDED = "SUPERSEDED"  # a later run of the same day replaced its result


UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    API = "api"
    CLI = "cli"
    CONSOLE = "console"
