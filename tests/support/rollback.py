"""Task logic tested in-process, against the real database, leaving nothing behind.

``rolled_back`` binds every unit of work of the process (``storage.db.sessions_from``) to
one connection inside a transaction that is rolled back when the test ends: each
``session_scope`` commit becomes a savepoint's release. Redis (locks) is the real one.
PostgreSQL's ``now()`` is the start of that one transaction for the whole test: a row
meant to be due "now" is written as due a moment before.

``Ledger`` writes the rows a task starts from (tenant, PSP account, transaction, stored
webhook, merchant notification) straight through the ORM, in that same transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from connxt.ids import random_id
from connxt.secrets import key_ring
from state_machine import Status
from storage import inbox
from storage.db import session_scope, sessions_from
from storage.models import (
    Environment,
    FlowAction,
    FlowTarget,
    Notification,
    NotificationStatus,
    Psp,
    Transaction,
)
from storage.psps import seal_credential
from storage.tenants import create_tenant


@pytest.fixture
def rolled_back(database) -> Iterator[None]:
    engine = create_engine(database, poolclass=NullPool)
    with engine.connect() as connection:
        outer = connection.begin()
        factory = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            with sessions_from(factory):
                yield
        finally:
            outer.rollback()
    engine.dispose()


SIGNING_KEY = "whk-in-process"


@dataclass
class Ledger:
    brand_id: str
    environment_id: str
    psp_id: str
    target_id: str
    deposit_action_id: str

    @classmethod
    def open(cls, psp_name: str = "Paymaxis", signing: bool = True) -> Ledger:
        """A tenant with one PSP account; without ``signing`` the account has no webhook
        signing key, so its webhooks are unverified (only hints)."""
        credential = {"apiKey": "pmx-in-process"}
        if signing:
            credential["webhookSigningKey"] = SIGNING_KEY
        with session_scope() as session:
            tenant = create_tenant(session, key_ring(), random_id("brand"), "live")
            target = session.scalars(select(FlowTarget).where(FlowTarget.name == psp_name)).one()
            deposit = session.scalars(
                select(FlowAction).where(
                    FlowAction.flow_target_id == target.id, FlowAction.name == "DEPOSIT"
                )
            ).one()
            psp = Psp(
                id=random_id("psp"),
                brand_id=tenant.brand_id,
                environment_id=tenant.environment_id,
                flow_target_id=target.id,
                name=random_id("account"),
                created_by="tests",
                updated_by="tests",
            )
            seal_credential(key_ring(), psp, credential)
            session.add(psp)
            return cls(tenant.brand_id, tenant.environment_id, psp.id, target.id, deposit.id)

    def deposit(self, status: Status, amount: str = "10.00", currency: str = "USD") -> str:
        """A deposit at ``status``, known to the PSP as ``pmx_<its id>``."""
        txn_id = random_id("txn")
        with session_scope() as session:
            session.add(
                Transaction(
                    id=txn_id,
                    brand_id=self.brand_id,
                    environment_id=self.environment_id,
                    psp_id=self.psp_id,
                    flow_action_id=self.deposit_action_id,
                    flow_target_id=self.target_id,
                    action="DEPOSIT",
                    amount=Decimal(amount),
                    currency=currency,
                    status=status,
                    psp_txn_id=f"pmx_{txn_id}",
                    execute_payload={},
                )
            )
        return txn_id

    def webhook(
        self,
        txn_id: str,
        state: str,
        amount: str | None = "10.00",
        signed: bool = True,
        names: str | None = None,
        body: bytes | None = None,
    ) -> int:
        """A Paymaxis webhook for the deposit, stored as the ingress stores it. ``amount``
        None: the body states no amount; ``names``: the transaction the body names, when
        not the one it is stored for; ``body``: these bytes instead (signed all the same)."""
        if body is None:
            payment = {
                "id": f"pmx_{names or txn_id}",
                "referenceId": names or txn_id,
                "paymentType": "DEPOSIT",
                "state": state,
                "currency": "USD",
            }
            if amount is not None:
                payment["amount"] = amount
            body = json.dumps(payment).encode()
        key = SIGNING_KEY if signed else "not-the-key"
        signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        with session_scope() as session:
            stored = inbox.store(
                session,
                self.psp_id,
                f"pmx_{txn_id}:{state}:{random_id('k')}",
                txn_id,
                {"signature": signature},
                body,
                verified=signed,
            )
            assert stored is not None
            return stored

    def notification(self, txn_id: str, url: str | None) -> str:
        """A merchant notification due now for the transaction, to ``url`` (the
        environment's notification URL; None: it has none)."""
        notification_id = random_id("ntf")
        with session_scope() as session:
            session.get(Environment, self.environment_id).notification_url = url
            session.add(
                Notification(
                    id=notification_id,
                    txn_id=txn_id,
                    environment_id=self.environment_id,
                    event_type="transaction.success",
                    status=NotificationStatus.PENDING,
                    # Due before PostgreSQL's now(), which here is the start of the test's
                    # one transaction (see above).
                    next_attempt_at=datetime.now(UTC) - timedelta(minutes=1),
                )
            )
        return notification_id

    @staticmethod
    def status(txn_id: str) -> Status:
        with session_scope() as session:
            return session.get(Transaction, txn_id).status
