"""A PSP account, its transactions and the sandbox's books of it, for reconciliation tests.

The sandbox runs in this process (sandbox.testing.serve), so a test can set when each of
its payments settled (as the PSP's own clock would have had it) and reconcile a past day.
The fixtures ``sandbox``, ``books`` and ``window`` are imported by name by the tests that
use them.
Transactions are written straight into the database with the status and creation time a
case needs: the paths that make them are other tests' business.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from connectors.registry import get_connector
from connxt.settings import get_settings
from sandbox.app import create_app
from sandbox.signing import sticpay_sign
from sandbox.testing import serve
from storage.db import session_scope
from storage.recon import results, runs
from storage.recon.vocabulary import Trigger
from tests.support.flows import create_psp, target
from workers import recon


def today() -> date:
    """Read when asked, not when a module is imported: a run that crosses midnight between
    a test file's import and its tests would otherwise ask the sandbox for the wrong day."""
    return datetime.now(UTC).date()


def yesterday() -> date:
    return today() - timedelta(days=1)


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), UTC)


class Books:
    """One PSP account on both sides: Connxt's transactions and the sandbox's payments."""

    def __init__(
        self,
        client: Any,
        headers: dict[str, str],
        sandbox: Any,
        url: str,
        psp: str,
        monkeypatch: Any,
    ):
        self.sandbox, self.url, self.psp_name = sandbox, url, psp
        httpx.post(f"{url}/_control/reset").raise_for_status()  # no payments, no faults
        self.store = sandbox.state.sandbox.store
        self.ledger = sandbox.state.sandbox.ledger
        if psp == "Paymaxis":
            self.credential = {"apiKey": f"pk_{secrets.token_hex(6)}"}
        else:
            self.credential = {
                "merchantEmail": f"m{secrets.token_hex(4)}@example.com",
                "apiKey": secrets.token_hex(8),
            }
            httpx.put(f"{url}/_control/accounts", json=self.credential).raise_for_status()
        # The process's own connector (reports, and the inquiries of automatic fixes) talks
        # to this sandbox for the test.
        self.connector = get_connector(psp)
        monkeypatch.setattr(self.connector, "base_url", f"{url}/{psp.lower()}")
        flow_target = target(client, headers, psp)
        self.psp = create_psp(
            client, headers, flow_target, self.credential, f"R {secrets.token_hex(3)}"
        )
        self.psp_id = self.psp["id"]

    # -- the PSP's side ------------------------------------------------------------------

    def pay(
        self,
        txn_id: str,
        amount: str = "100.00",
        kind: str = "DEPOSIT",
        settled: datetime | None = None,
    ) -> str:
        """A payment the PSP completed for ``txn_id`` (settled ``settled``, else now)."""
        if self.psp_name == "Paymaxis":
            body = {
                "paymentType": "WITHDRAWAL" if kind == "WITHDRAW" else kind,
                "amount": amount,
                "currency": "USD",
                "referenceId": txn_id,
            }
            if kind == "REFUND":
                body["parentPaymentId"] = self.pay(f"{txn_id}_parent", amount, settled=settled)
            answer = httpx.post(
                f"{self.url}/paymaxis/api/v1/payments",
                json=body,
                headers={"Authorization": f"Bearer {self.credential['apiKey']}"},
            )
            payment_id = answer.json()["result"]["id"]
            if kind == "DEPOSIT":
                httpx.post(
                    f"{self.url}/_control/complete/{payment_id}", json={"decision": "approve"}
                )
        else:
            fields = {
                "merchant_email": self.credential["merchantEmail"],
                "order_no": txn_id,
                "order_amount": amount,
                "order_currency": "USD",
                "receiver_email": "payee@example.com",
                "type": "WITHDRAW",
            }
            answer = httpx.post(
                f"{self.url}/sticpay/api/withdraw",
                data={**fields, "sign": sticpay_sign(fields, self.credential["apiKey"])},
            )
            payment_id = answer.json()["data"]["transaction_id"]
        if settled is not None:
            self.settle_at(payment_id, settled)
        return payment_id

    def settle_at(self, payment_id: str, when: datetime) -> None:
        payment = self.store.payments[payment_id]
        payment.updated_at = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def inject(
        self, kind: str, payment_id: str | None = None, settled: datetime | None = None
    ) -> dict:
        answer = httpx.post(
            f"{self.url}/_control/settlements/inject",
            json={"kind": kind, **({"paymentId": payment_id} if payment_id else {})},
        )
        answer.raise_for_status()
        if settled is not None and kind == "unknown":
            self.ledger.adjustments[-1].settled_at = settled
        return answer.json()

    def adjust(
        self,
        kind: str,
        payment_id: str | None = None,
        amount: str | None = None,
        settled: datetime | None = None,
    ) -> None:
        body = {
            "kind": kind,
            "psp": "paymaxis" if self.psp_name == "Paymaxis" else "sticpay",
            "account": self.credential.get("apiKey")
            if self.psp_name == "Paymaxis"
            else self.credential["merchantEmail"],
        }
        if payment_id:
            body["paymentId"] = payment_id
        if amount:
            body["amount"] = amount
        httpx.post(f"{self.url}/_control/settlements/adjustments", json=body).raise_for_status()
        if settled is not None:
            self.ledger.adjustments[-1].settled_at = settled

    # -- our side ------------------------------------------------------------------------

    def txn(
        self,
        status: str,
        created: datetime,
        amount: str = "100.00",
        psp_txn_id: str | None = None,
        action: str = "DEPOSIT",
        txn_id: str | None = None,
        currency: str = "USD",
    ) -> str:
        txn_id = txn_id or f"txn_{secrets.token_hex(10)}"
        with session_scope() as session:
            session.execute(
                text(
                    "INSERT INTO transactions (id, brand_id, environment_id, psp_id,"
                    " flow_action_id, flow_target_id, action, transaction_type, amount, currency,"
                    " status, psp_txn_id, execute_payload, created_at, updated_at)"
                    " SELECT :id, p.brand_id, p.environment_id, p.id, fa.id, p.flow_target_id,"
                    " :action, lower(:action), :amount, :currency, :status, :psp_txn_id, '{}',"
                    " :created, :created"
                    " FROM psps p JOIN flow_actions fa ON fa.flow_target_id = p.flow_target_id"
                    " AND fa.name = :action WHERE p.id = :psp"
                ),
                {
                    "id": txn_id,
                    "action": action,
                    "amount": Decimal(amount),
                    "currency": currency,
                    "status": status,
                    "psp_txn_id": psp_txn_id,
                    "created": created,
                    "psp": self.psp_id,
                },
            )
        return txn_id

    def settled_txn(
        self,
        day: date,
        amount: str = "100.00",
        kind: str = "DEPOSIT",
        hour: int = 10,
        status: str = "SUCCESS",
    ) -> tuple[str, str]:
        """A transaction made on ``day`` and the PSP's payment of it, settled that day."""
        txn_id = f"txn_{secrets.token_hex(10)}"
        payment_id = self.pay(txn_id, amount, kind, settled=at(day, hour, 5))
        self.txn(status, at(day, hour), amount, payment_id, kind, txn_id)
        return txn_id, payment_id

    # -- reconciling ---------------------------------------------------------------------

    def new_run(self, day: date, trigger: Trigger = Trigger.CLI) -> str:
        with session_scope() as session:
            psp = runs.psp_in_scope(session, None, self.psp_id)
            return runs.create_run(session, psp, day, trigger, "test", enqueue=False).id

    def reconcile(self, day: date) -> recon.Outcome:
        return recon.execute(self.new_run(day))

    def line_classes(self, run_id: str) -> dict[str, list[str]]:
        """Class → the references (or payment ids) of that run's lines, in report order."""
        found: dict[str, list[str]] = {}
        with session_scope() as session:
            rows = session.execute(
                text(
                    "SELECT class, coalesce(txn_id, psp_payment_id, type) FROM recon_lines"
                    " WHERE run_id = :run ORDER BY line_no"
                ),
                {"run": run_id},
            )
            for klass, key in rows:
                found.setdefault(klass, []).append(key)
        return found

    def txn_classes(self, run_id: str) -> dict[str, str]:
        with session_scope() as session:
            return results.transaction_classes(session, run_id)


def window_between(young: datetime, old: datetime) -> float:
    """A settlement window (days) that ``young`` is inside and ``old`` is past, now."""
    now = datetime.now(UTC)
    assert old < young <= now
    return ((now - young) + (young - old) / 2) / timedelta(days=1)


def seed_synthetic(books: Books, day: date, lines: int, seed: int, prefix: str) -> None:
    """The transactions a synthetic report of ``lines`` settles (sandbox.settlements.
    Synthetic), written in bulk, and the sandbox told to make up that report."""
    spec = {
        "psp": books.psp_name.lower(),
        "account": books.credential.get("merchantEmail") or books.credential["apiKey"],
        "date": day.isoformat(),
        "lines": lines,
        "seed": seed,
        "referencePrefix": prefix,
    }
    httpx.post(f"{books.url}/_control/settlements/synthetic", json=spec).raise_for_status()
    payment = "pmx" if books.psp_name == "Paymaxis" else "stp"
    with session_scope() as session:
        ids = session.execute(
            text(
                "SELECT p.brand_id, p.environment_id, fa.id, p.flow_target_id FROM psps p"
                " JOIN flow_actions fa ON fa.flow_target_id = p.flow_target_id"
                " AND fa.name = 'DEPOSIT' WHERE p.id = :psp"
            ),
            {"psp": books.psp_id},
        ).one()
        cursor = session.connection().connection.driver_connection.cursor()
        created = at(day, 0)
        with cursor.copy(
            "COPY transactions (id, brand_id, environment_id, psp_id, flow_action_id,"
            " flow_target_id, action, amount, currency, status, psp_txn_id, execute_payload,"
            " created_at) FROM STDIN"
        ) as copy:
            for i in range(lines):
                gross = 100 + (i * 7919 + seed) % 99900
                copy.write_row(
                    (
                        f"{prefix}{i:08d}",
                        ids[0],
                        ids[1],
                        books.psp_id,
                        ids[2],
                        ids[3],
                        "DEPOSIT",
                        f"{gross // 100}.{gross % 100:02d}",
                        "USD",
                        "SUCCESS",
                        f"{payment}_s{seed}_{i:08d}",
                        "{}",
                        created,
                    )
                )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple]:
    """The sandbox's app and URL, served in this process for a module's tests."""
    app = create_app()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def books(client, tenant, sandbox, monkeypatch) -> Books:
    """A Paymaxis account of the test's tenant and the sandbox's books of it."""
    app, url = sandbox
    return Books(client, tenant[1], app, url, "Paymaxis", monkeypatch)


@pytest.fixture
def window(monkeypatch) -> Callable[[float], None]:
    """Set the settlement window (days) of every PSP for the test."""

    def set_window(days: float) -> None:
        monkeypatch.setattr(get_settings(), "recon_settlement_window_days", days)

    return set_window
