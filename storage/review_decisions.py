"""Deciding a review: an operator's act, recorded with who decided and why.

Deciding SUCCESS records the money the PSP stated it took, or, where it stated none, the
money the operator gives, as the transaction's captured amount (storage.captures): never
the amount asked. 200.00 asked, 5.00 paid, resolved SUCCESS: 5.00 captured, 5.00
refundable, and the merchant told so.

A terminal transaction (a late success) keeps its status: the decision is recorded beside
it, and a review waiting behind the decided one is shown next. An open one moves through
the state machine (storage.decisions.resolve_review).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.money import fits_minor_units
from state_machine import Source, Status
from storage.models import Transaction, TransactionReview
from storage.reviews import adopt_shown, undecided
from storage.status_writes import record_unmoved, write_at_version


class CannotCapture(ValueError):
    """The decision cannot say what was captured as asked; the message says why."""


def waiting_review(session: Session, txn: Transaction) -> TransactionReview | None:
    """The review a held transaction's columns show: its oldest one still waiting."""
    adopt_shown(session, txn.id)
    return _next_waiting(session, txn.id, None)


def _next_waiting(session: Session, txn_id: str, after: str | None) -> TransactionReview | None:
    query = select(TransactionReview).where(
        TransactionReview.txn_id == txn_id, TransactionReview.resolved_at.is_(None)
    )
    if after is not None:
        query = query.where(TransactionReview.id != after)
    return session.scalar(
        query.order_by(TransactionReview.opened_at, TransactionReview.id).limit(1)
    )


def decision(
    txn: Transaction,
    review: TransactionReview | None,
    decided: Status,
    note: str,
    by: str,
    amount: Decimal | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """The column values that close the review (the transaction's ``review_*`` columns,
    and for SUCCESS what was captured). Raises CannotCapture."""
    values: dict[str, Any] = {
        "review_resolved_at": datetime.now(UTC),
        "review_resolution": decided.value,
        "review_note": note,
        "review_resolved_by": by,
    }
    if decided is not Status.SUCCESS:
        if amount is not None or currency is not None:
            raise CannotCapture("an amount is recorded only with a SUCCESS decision")
        return values
    detail = review.detail if review is not None else (txn.review_detail or {})
    captured_amount, captured_currency = _captured(detail, amount, currency, txn.currency)
    return {**values, "captured_amount": captured_amount, "captured_currency": captured_currency}


def _captured(
    detail: dict[str, Any], given: Decimal | None, given_currency: str | None, asked_currency: str
) -> tuple[Decimal, str]:
    """What the PSP stated it took; where it stated none, what the operator gives (in the
    PSP's currency, else the one given, else the transaction's). Never the amount asked."""
    stated = _usable_amount(detail.get("pspAmount"))
    stated_currency = _usable_currency(detail.get("pspCurrency"))
    if given_currency is not None:
        given_currency = _usable_currency(given_currency)
        if given_currency is None:
            raise CannotCapture("the currency is a three-letter code, e.g. USD")
        if stated_currency is not None and given_currency != stated_currency:
            raise CannotCapture(f"the PSP stated {stated_currency}: that is what was captured")
    currency = stated_currency or given_currency or asked_currency
    if stated is not None:
        if given is not None and given != stated:
            raise CannotCapture(
                f"the PSP stated {stated} {currency}: that is what was captured "
                "(an amount is given only where the PSP stated none)"
            )
        return stated, currency
    if given is None:
        raise CannotCapture("the PSP did not say how much it took: give the amount (--amount)")
    if not given.is_finite() or given <= 0 or given.adjusted() > 15:
        raise CannotCapture("the amount is a positive number")
    if not fits_minor_units(given, currency):
        raise CannotCapture(f"{given} has more decimal places than {currency} allows")
    return given, currency


def _usable_amount(text: Any) -> Decimal | None:
    """A stated amount a decision can record: positive, at most 8 places (the column's)."""
    try:
        amount = Decimal(str(text)) if text is not None else None
    except InvalidOperation:
        return None
    if amount is None or not amount.is_finite() or amount <= 0 or amount.adjusted() > 15:
        return None
    exponent = amount.as_tuple().exponent
    return amount if isinstance(exponent, int) and exponent >= -8 else None


def _usable_currency(text: Any) -> str | None:
    code = text.strip().upper() if isinstance(text, str) else ""
    return code if len(code) == 3 and code.isascii() and code.isalpha() else None


def record_decision(
    session: Session,
    txn: Transaction,
    review: TransactionReview | None,
    values: dict[str, Any],
    reason: str,
) -> bool:
    """Close the review of a terminal transaction: its status stays, the decision and its
    event row are recorded; a review waiting behind it is shown next. False when another
    writer changed the row first."""
    shown = dict(values)
    following = _next_waiting(session, txn.id, review.id) if review is not None else None
    if following is not None:  # still held: by the next review, shown in its place
        shown.update(
            review_reason=following.reason,
            review_detail=following.detail,
            review_opened_at=following.opened_at,
            **undecided(),
        )
    if not write_at_version(session, txn, shown, Transaction.review_resolved_at.is_(None)):
        return False
    close_review(session, review, values)
    record_unmoved(session, txn, Source.OPERATOR, reason)
    session.expire(txn)
    return True


def close_review(
    session: Session, review: TransactionReview | None, values: dict[str, Any]
) -> None:
    """Record the decision on the review's own row (``values``: ``decision``'s)."""
    if review is None:
        return
    session.execute(
        update(TransactionReview)
        .where(TransactionReview.id == review.id, TransactionReview.resolved_at.is_(None))
        .values(
            resolved_at=values["review_resolved_at"],
            resolution=values["review_resolution"],
            note=values["review_note"],
            resolved_by=values["review_resolved_by"],
            captured_amount=values.get("captured_amount"),
            captured_currency=values.get("captured_currency"),
        )
    )
