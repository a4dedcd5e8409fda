"""Transaction statuses and the one table of single steps allowed between them."""

import enum


class Status(enum.StrEnum):
    """Where a transaction is in its life; the value is stored verbatim in ``status`` columns."""

    NEW = "NEW"
    """Built from a request but not persisted yet; only the API's CREATE moves it."""

    CREATED = "CREATED"
    """Persisted by the API; the initiate task is queued but has not reached the PSP."""

    INITIATED = "INITIATED"
    """The worker is calling, or has called, the PSP; the PSP's answer is not known yet."""

    PG_ACCEPTED = "PG_ACCEPTED"
    """The PSP took the payment (redirect or pending) and will report the outcome later."""

    PG_REJECTED = "PG_REJECTED"
    """The PSP refused at initiation; recorded together with the step on to REJECTED."""

    SUCCESS = "SUCCESS"
    """Terminal: money moved."""

    FAILED = "FAILED"
    """Terminal: it ended without money (cancelled, abandoned, or unknown to the PSP)."""

    REJECTED = "REJECTED"
    """Terminal: the PSP declined the payment when it was initiated."""


# The merchant is notified on entering one of these, so they must never change again.
TERMINAL: frozenset[Status] = frozenset({Status.SUCCESS, Status.FAILED, Status.REJECTED})

# Every single step a transaction may take. Events that skip ahead walk this table, so
# an implied path can only ever consist of steps listed here.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.CREATED}),
    # FAILED straight from CREATED: it expired before a worker ever reached the PSP.
    Status.CREATED: frozenset({Status.INITIATED, Status.FAILED}),
    # FAILED straight from INITIATED: expired, or the PSP says it never heard of it.
    Status.INITIATED: frozenset({Status.PG_ACCEPTED, Status.PG_REJECTED, Status.FAILED}),
    Status.PG_ACCEPTED: frozenset({Status.SUCCESS, Status.FAILED}),
    Status.PG_REJECTED: frozenset({Status.REJECTED}),
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
    Status.REJECTED: frozenset(),
}


def is_legal_step(from_status: Status, to_status: Status) -> bool:
    """Whether ``from_status -> to_status`` is one allowed single step."""
    return to_status in TRANSITIONS.get(from_status, frozenset())
