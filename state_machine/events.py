"""What can happen to a transaction, who reported it, and what the caller must do next."""

import enum


class Event(enum.StrEnum):
    """Something that happened to a transaction; connectors map PSP answers onto these."""

    CREATE = "create"
    """The API accepted and persisted the request."""

    INITIATE = "initiate"
    """A worker is about to call the PSP."""

    PSP_ACCEPTED = "psp_accepted"
    """The PSP took the payment (redirect or pending) and will report the outcome later."""

    PSP_DECLINED = "psp_declined"
    """The PSP explicitly refused the payment at initiation."""

    PSP_COMPLETED = "psp_completed"
    """The PSP says money moved: the amount and currency we asked for."""

    PSP_MISMATCH = "psp_mismatch"
    """The PSP says money moved, but not the amount or currency we asked for (or not which)."""

    PSP_FAILED = "psp_failed"
    """An accepted payment ended without money (cancelled or declined on the hosted page)."""

    PSP_NOT_FOUND = "psp_not_found"
    """An inquiry says the PSP has never heard of the payment."""

    PSP_UNKNOWN = "psp_unknown"
    """Timeout or 5xx: the outcome is unknown, which is not the same as failed."""

    EXPIRE = "expire"
    """The expiry sweep gave up on an abandoned transaction."""

    RESOLVE_SUCCESS = "resolve_success"
    """An operator decided that a transaction held for review succeeded."""

    RESOLVE_FAILED = "resolve_failed"
    """An operator decided that a transaction held for review failed."""


# Only these move a transaction held for review; nothing else moves it while it is held.
OPERATOR_EVENTS = frozenset({Event.RESOLVE_SUCCESS, Event.RESOLVE_FAILED})


class Review(enum.StrEnum):
    """Why a transaction waits for an operator; the value is stored and shown verbatim."""

    AMOUNT_MISMATCH = "amount_mismatch"
    """The PSP reports money moved, but not the amount or currency asked for; until an
    operator decides, the transaction stays open and nothing settles it."""

    LATE_SUCCESS = "late_success"
    """The PSP reports money moved for a transaction that had already failed; the status
    stays as the merchant was told, and the money needs a decision."""


class Source(enum.StrEnum):
    """Who produced an event; recorded on the event rows for auditing."""

    API = "api"
    """The ingress, on a merchant's request."""

    WORKER = "worker"
    """A Celery task acting on its own (e.g. starting the PSP call)."""

    PSP_RESPONSE = "psp_response"
    """The PSP's synchronous answer to our call."""

    WEBHOOK = "webhook"
    """A verified PSP notification."""

    REDIRECT = "redirect"
    """The customer's browser coming back from the PSP (never trusted alone)."""

    INQUIRY = "inquiry"
    """A status inquiry we sent to the PSP (reconciliation)."""

    EXPIRY = "expiry"
    """The beat sweep expiring abandoned transactions."""

    OPERATOR = "operator"
    """A human, through the CLI."""

    RECONCILIATION = "reconciliation"
    """Settlement reconciliation: the PSP's books said money moved (``connxt recon``)."""


class Command(enum.StrEnum):
    """A side effect the caller must schedule (after commit) when it records a decision."""

    INITIATE_AT_PSP = "initiate_at_psp"
    """Enqueue the initiate task; issued when CREATE persists a transaction."""

    NOTIFY_MERCHANT = "notify_merchant"
    """Enqueue the merchant webhook; issued whenever a decision enters a terminal status."""
