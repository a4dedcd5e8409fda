"""What the console's pages show, read through the same storage functions as the API.

Every read takes the viewer's scope: a tenant sees its own brand and environment only
(another tenant's transaction is "not found", as in the API), an operator every tenant.
What reaches a page is redacted here once more, whatever the stored copy already is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectors.money import format_amount, minor_units
from connectors.registry import queue_depths
from connxt.logging import REDACTED, redact
from console.auth import Viewer
from state_machine import Status
from storage import audit, inbox, notifications
from storage import transactions as txn_repo
from storage.captures import captured
from storage.catalog import cached_target
from storage.db import session_scope
from storage.directory import environment_labels, psp_accounts
from storage.models import InboxMessage, Notification, NotificationAttempt, Transaction
from storage.psp_health import PspHealth, psp_health
from storage.psps import get_psp
from storage.reviews import is_held, reviews_of
from storage.transaction_view import exact_amount_text, review_row_view, review_view

PAGE_SIZE = 50
ACTIONS = ("DEPOSIT", "WITHDRAW", "REFUND")
STATUSES = [s.value for s in Status if s is not Status.NEW]
_MAX_SHOWN = 4000  # characters of a stored body shown on a page


class NotFound(LookupError):
    """Not there, or not the viewer's to see (never told apart). The app answers it with
    the 404 page, naming ``what`` was looked for (console.app)."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key}")
        self.what = what


def redacted_url(url: str | None) -> str | None:
    """A URL with the values of secret-looking query parameters replaced."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if not parts.query:
        return redact(url)
    query = [(k, redact(v, k)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return redact(urlunsplit(parts._replace(query=urlencode(query, safe=REDACTED))))


def pretty(value: Any) -> str:
    """A redacted value as indented JSON text, cut to what a page can show."""
    shown = json.dumps(redact(value), indent=2, ensure_ascii=False, default=str)
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "\n…"


def stored_body(body: bytes) -> str:
    try:
        return pretty(json.loads(body))
    except ValueError:
        text = redact(body.decode(errors="replace"))
        return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


# --- the transaction list ------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    psp_id: str | None = None
    action: str | None = None
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    search: str | None = None
    review: bool = False

    def query(self, **extra: str) -> str:
        """These filters as a query string (for the next page's link)."""
        pairs = {
            "status": self.status,
            "psp": self.psp_id,
            "action": self.action,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "q": self.search,
            "review": "1" if self.review else None,
            **extra,
        }
        return urlencode({k: v for k, v in pairs.items() if v})


@dataclass
class ListPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    psps: list[tuple[str, str]]  # (id, label) for the filter
    show_tenant: bool


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _day_after(day: date | None) -> datetime | None:
    """The end of an inclusive ``to`` day; None for none, or for the last day there is."""
    if day is None or day == date.max:
        return None
    return _day_start(day + timedelta(days=1))


def list_page(viewer: Viewer, filters: Filters, after: tuple[datetime, str] | None) -> ListPage:
    with session_scope() as session:
        page = txn_repo.list_transactions(
            session,
            viewer.scope,
            limit=PAGE_SIZE,
            after=after,
            status=filters.status,
            psp_id=filters.psp_id,
            action=filters.action,
            created_from=_day_start(filters.date_from) if filters.date_from else None,
            created_to=_day_after(filters.date_to),
            review=True if filters.review else None,
            search=filters.search,
        )
        accounts = psp_accounts(session, viewer.scope)
        tenants = environment_labels(
            session, [t.environment_id for t in page.items] + [p.environment_id for p in accounts]
        )
        names = {p.id: p.name for p in accounts}
        rows = [
            {
                "txn": t,
                "amount": format_amount(t.amount, t.currency),
                "psp": names.get(t.psp_id, t.psp_id),
                "tenant": tenants.get(t.environment_id, t.environment_id),
                "held": is_held(t),
            }
            for t in page.items
        ]
    # Operators choose among every tenant's accounts: each is named with its tenant.
    psps = [
        (p.id, f"{p.name} ({tenants.get(p.environment_id, '')})" if viewer.is_operator else p.name)
        for p in accounts
    ]
    cursor = None
    if page.next_cursor:
        cursor = f"{page.next_cursor[0].isoformat()}|{page.next_cursor[1]}"
    return ListPage(rows, cursor, psps, viewer.is_operator)


def parse_cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    stamp, _, txn_id = value.partition("|")
    try:
        return datetime.fromisoformat(stamp), txn_id
    except ValueError:
        return None


# --- one transaction -----------------------------------------------------------------------


@dataclass
class Webhook:
    message: InboxMessage
    headers: str
    body: str


@dataclass
class TransactionPage:
    txn: Transaction
    amount: str
    tenant: str
    psp_name: str
    connector: str
    path: list[str]
    events: list[Any]
    exchanges: list[dict[str, Any]]
    psp_state: str | None
    webhooks: list[Webhook]
    notifications: list[tuple[Notification, list[NotificationAttempt]]]
    review: dict[str, Any] | None
    held: bool
    is_open: bool
    error: str | None = None
    captured: str | None = None  # "5.00 USD": what moved (storage.captures)
    reviews: list[dict[str, Any]] = field(default_factory=list)  # every one, oldest first


def status_path(events: list[Any]) -> list[str]:
    """The statuses the transaction went through, in order (operator notes and reviews,
    which keep the status, are not steps)."""
    path: list[str] = []
    for event in events:
        if not path and event.from_status:
            path.append(event.from_status)
        if event.to_status != (path[-1] if path else None):
            path.append(event.to_status)
    return path


def _exchange(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": raw.get("method"),
        "url": redacted_url(raw.get("url")),
        "status": raw.get("statusCode"),
        "elapsed_ms": raw.get("elapsedMs"),
        "error": redact(raw.get("error")),
        "request": pretty(raw.get("request")),
        "response": pretty(raw.get("response")),
    }


def transaction_page(viewer: Viewer, txn_id: str) -> TransactionPage:
    with session_scope() as session:
        txn = txn_repo.get_in_scope(session, viewer.scope, txn_id)
        if txn is None:
            raise NotFound("transaction", txn_id)
        events = txn_repo.events_of(session, txn_id)
        meta = txn.psp_meta or {}
        target = cached_target(session, txn.flow_target_id)
        psp = get_psp(session, txn.brand_id, txn.environment_id, txn.psp_id)
        sent = [
            (n, [_redacted_attempt(a) for a in attempts])
            for n, attempts in notifications.for_transaction(session, txn_id)
        ]
        return TransactionPage(
            txn=txn,
            amount=format_amount(txn.amount, txn.currency),
            tenant=environment_labels(session, [txn.environment_id]).get(txn.environment_id, ""),
            psp_name=psp.name if psp else txn.psp_id,
            connector=target.name if target else "",
            path=status_path(events),
            events=events,
            exchanges=[_exchange(x) for x in meta.get("http") or [] if isinstance(x, dict)],
            psp_state=meta.get("pspState"),
            webhooks=[
                Webhook(m, pretty(m.headers), stored_body(bytes(m.body)))
                for m in inbox.for_transaction(session, txn_id)
            ],
            notifications=sent,
            review=review_view(txn),
            held=is_held(txn),
            is_open=txn_repo.is_open(txn),
            error=pretty(txn.error) if txn.error else None,
            captured=_money(captured(txn)),
            reviews=[review_row_view(r) for r in reviews_of(session, txn_id)],
        )


def _money(money: tuple[Decimal, str] | None) -> str | None:
    if money is None:
        return None
    amount, currency = money
    return f"{exact_amount_text(amount, minor_units(currency))} {currency}"


def _redacted_attempt(attempt: NotificationAttempt) -> NotificationAttempt:
    # Detached copies: the page must not write a redacted URL back to the database.
    return NotificationAttempt(
        id=attempt.id,
        url=redacted_url(attempt.url),
        status_code=attempt.status_code,
        error=redact(attempt.error),
        elapsed_ms=attempt.elapsed_ms,
        created_at=attempt.created_at,
    )


# --- parked work and PSP health ------------------------------------------------------------


@dataclass
class ParkedPage:
    webhooks: list[tuple[InboxMessage, str, str]]  # (message, PSP account, tenant)
    notifications: list[tuple[Notification, str]]  # (notification, tenant)


def parked_page(viewer: Viewer) -> ParkedPage:
    with session_scope() as session:
        webhooks = inbox.parked(session, viewer.scope)
        failed = notifications.given_up(session, viewer.scope[1] if viewer.scope else None)
        accounts = {p.id: p for p in psp_accounts(session, viewer.scope)}
        tenants = environment_labels(
            session,
            [p.environment_id for p in accounts.values()] + [n.environment_id for n in failed],
        )
    rows = []
    for message in webhooks:
        account = accounts.get(message.psp_id)
        tenant = tenants.get(account.environment_id, "") if account else ""
        rows.append((message, account.name if account else message.psp_id, tenant))
    return ParkedPage(rows, [(n, tenants.get(n.environment_id, "")) for n in failed])


@dataclass
class HealthPage:
    psps: list[PspHealth]
    tenants: dict[str, str]
    queues: dict[str, int] | None  # None: not shown (tenants), or the broker did not answer
    broker_error: str | None = None


def health_page(viewer: Viewer) -> HealthPage:
    with session_scope() as session:
        rows = psp_health(session, viewer.scope)
        tenants = environment_labels(session, [r.environment_id for r in rows])
    if not viewer.is_operator:
        # The queues are every tenant's work together: operators only.
        return HealthPage(rows, tenants, None)
    try:
        return HealthPage(rows, tenants, queue_depths())
    except Exception as exc:  # the broker, Redis or RabbitMQ, did not answer
        return HealthPage(rows, tenants, None, broker_error=type(exc).__name__)


# --- the audit trail -----------------------------------------------------------------------

AUDIT_PAGE_SIZE = 100


@dataclass
class AuditPage:
    entries: list[audit.Entry]
    tenants: dict[str, str]  # environment id -> "brand / environment" (operators' column)
    older: int | None  # the `before` of the next page, when there is one


def audit_page(viewer: Viewer, before_id: int | None) -> AuditPage:
    """Newest first: every entry for an operator, a tenant's own for a tenant (what was
    done to its environment, its PSP accounts and transactions, and its sign-ins)."""
    with session_scope() as session:
        found = audit.entries(session, viewer.scope, before_id=before_id, limit=AUDIT_PAGE_SIZE + 1)
        tenants = environment_labels(session, [e.environment_id for e in found if e.environment_id])
    older = found[AUDIT_PAGE_SIZE - 1].id if len(found) > AUDIT_PAGE_SIZE else None
    return AuditPage(found[:AUDIT_PAGE_SIZE], tenants, older)


def change(entry: audit.Entry) -> str:
    """Before → after, as compact JSON text for a table cell."""
    if entry.before is None and entry.after is None:
        return ""
    shown = f"{_compact(entry.before)} → {_compact(entry.after)}"
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "…"


def _compact(value: Any) -> str:
    return "–" if value is None else json.dumps(value, ensure_ascii=False, default=str)
