"""The system of record: every table of the service.

Tenancy is (brand, environment); every tenant-owned row carries both ids so that each
query can be scoped without a join. Status columns read back as their enums
(``state_machine.Status`` and ``Source``, ``connectors.base.Action``, ``NotificationStatus``)
and are stored as their plain values in VARCHAR columns; the state machine, not the
database, owns the rules.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from connectors.base import Action
from state_machine import Source, Status


class NotificationStatus(enum.StrEnum):
    """Where a merchant notification stands (storage.notifications)."""

    PENDING = "PENDING"  # due now or at next_attempt_at
    DELIVERED = "DELIVERED"  # the merchant answered 2xx
    FAILED = "FAILED"  # out of attempts: an operator's to resend
    SKIPPED = "SKIPPED"  # the environment has no notification URL


def _enum(kind: type[enum.StrEnum]) -> Enum:
    """A column that reads back as ``kind``: stored as the member's value in a VARCHAR(20),
    as the migrations made it (no CHECK constraint: the code owns the values). A string
    that is no member is compared as it is (a filter for an unknown status finds nothing)."""
    return Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=False,
    )


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[str]: ARRAY(String)}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Brand(Base):
    __tablename__ = "brands"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _now()


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("brand_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    name: Mapped[str] = mapped_column(String(200))
    # Merchant notifications: where to POST, and the sealed signing secret.
    notification_url: Mapped[str | None] = mapped_column(Text)
    notification_secret_key_id: Mapped[str | None] = mapped_column(String(40))
    notification_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A rotation's overlap (storage.notification_secrets): the previous secret, still
    # signing beside the current one until ``notification_secret_previous_until``.
    notification_secret_previous_key_id: Mapped[str | None] = mapped_column(String(40))
    notification_secret_previous_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    notification_secret_previous_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )
    return_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FlowType(Base):
    __tablename__ = "flow_types"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class FlowTarget(Base):
    __tablename__ = "flow_targets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    flow_type_id: Mapped[str] = mapped_column(ForeignKey("flow_types.id"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    logo: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), server_default="ENABLED")
    credential_schema: Mapped[dict[str, Any]]
    input_schema: Mapped[dict[str, Any]]
    currencies: Mapped[list[str]]
    countries: Mapped[list[str]]
    payment_methods: Mapped[list[str]]
    updated_at: Mapped[datetime] = _now()


class FlowAction(Base):
    __tablename__ = "flow_actions"
    __table_args__ = (UniqueConstraint("flow_target_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    flow_target_id: Mapped[str] = mapped_column(ForeignKey("flow_targets.id"))
    name: Mapped[str] = mapped_column(String(20))
    # ENABLED | DISABLED (`connxt catalog disable`); catalog sync leaves it as it is.
    status: Mapped[str] = mapped_column(String(20), server_default="ENABLED")


class FlowDefinition(Base):
    __tablename__ = "flow_definitions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    flow_action_id: Mapped[str] = mapped_column(ForeignKey("flow_actions.id"), unique=True)
    description: Mapped[str] = mapped_column(String(200))
    input_schema: Mapped[dict[str, Any]]


class Psp(Base):
    __tablename__ = "psps"
    __table_args__ = (
        UniqueConstraint(
            "brand_id",
            "environment_id",
            "flow_target_id",
            "name",
            name="uq_psps_tenant_target_name",
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    flow_target_id: Mapped[str] = mapped_column(ForeignKey("flow_targets.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    logo: Mapped[str | None] = mapped_column(Text)
    credential_key_id: Mapped[str] = mapped_column(String(40))
    credential_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), server_default="ENABLED")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    created_by: Mapped[str] = mapped_column(String(40))
    updated_by: Mapped[str] = mapped_column(String(40))


class PspOperation(Base):
    __tablename__ = "psp_operations"
    psp_id: Mapped[str] = mapped_column(ForeignKey("psps.id", ondelete="CASCADE"), primary_key=True)
    flow_action_id: Mapped[str] = mapped_column(ForeignKey("flow_actions.id"), primary_key=True)
    flow_definition_id: Mapped[str] = mapped_column(ForeignKey("flow_definitions.id"))
    status: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer, server_default="0")


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        # Tenant listings, newest first. The id rides along (INCLUDE) rather than as a key
        # column: as a key column the planner could "look a transaction up by id" by
        # scanning this whole index, and did, when statistics were stale (migration 0015).
        Index(
            "ix_transactions_tenant_listing",
            "environment_id",
            "created_at",
            postgresql_include=["id"],
        ),
        # The reconciliation sweep: open transactions whose next look is due, soonest first.
        Index(
            "ix_transactions_due",
            "next_inquiry_at",
            postgresql_where=text("status IN ('CREATED','INITIATED','PG_ACCEPTED')"),
        ),
        Index(
            "ix_transactions_review_open",
            "environment_id",
            "created_at",
            "id",
            postgresql_where=text("review_reason IS NOT NULL AND review_resolved_at IS NULL"),
        ),
        # Personal data (storage.personal_data, migration 0010): ended and not yet redacted,
        # erasures waiting for an open transaction to end, a brand's customer.
        Index(
            "ix_transactions_personal_data_due",
            "updated_at",
            postgresql_where=text(
                "personal_data_redacted_at IS NULL AND status IN ('SUCCESS','FAILED','REJECTED')"
            ),
        ),
        Index(
            "ix_transactions_erasure_pending",
            "erasure_requested_at",
            postgresql_where=text(
                "erasure_requested_at IS NOT NULL AND personal_data_redacted_at IS NULL"
            ),
        ),
        Index(
            "ix_transactions_customer",
            "brand_id",
            "user_id",
            postgresql_where=text("user_id IS NOT NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    psp_id: Mapped[str] = mapped_column(ForeignKey("psps.id"))
    flow_action_id: Mapped[str] = mapped_column(ForeignKey("flow_actions.id"))
    flow_target_id: Mapped[str] = mapped_column(ForeignKey("flow_targets.id"))
    action: Mapped[Action] = mapped_column(_enum(Action))
    transaction_type: Mapped[str | None] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Numeric(24, 8))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[Status] = mapped_column(_enum(Status))
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    parent_txn_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"), index=True)
    psp_txn_id: Mapped[str | None] = mapped_column(String(200))
    order_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    execute_payload: Mapped[dict[str, Any]]
    navigation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The last PSP exchanges, redacted: the reference's `data.meta`.
    psp_meta: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    initiate_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    inquiry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    next_inquiry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a redirect or an unverified webhook last had the PSP asked (storage.inquiries).
    inquiry_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # Held for an operator (storage.reviews): why (a state_machine.Review value), what the
    # PSP reported, and the operator's decision. The reason stays after the decision.
    review_reason: Mapped[str | None] = mapped_column(String(40))
    review_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    review_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_resolution: Mapped[str | None] = mapped_column(String(20))  # SUCCESS | FAILED
    review_note: Mapped[str | None] = mapped_column(Text)
    review_resolved_by: Mapped[str | None] = mapped_column(String(200))
    # What the PSP took, as an operator's SUCCESS decision recorded it; NULL on a plain
    # SUCCESS, which took exactly the amount asked (storage.captures).
    captured_amount: Mapped[Decimal | None] = mapped_column(Numeric(24, 8))
    captured_currency: Mapped[str | None] = mapped_column(String(3))

    # The customer's personal data (storage.personal_data): when it was redacted, and an
    # erasure request waiting for the transaction to end.
    personal_data_redacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erasure_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TransactionReview(Base):
    """One review of a transaction (storage.reviews): one per distinct PSP report (its
    payment, state and money), with its own merchant notification and its own decision.
    The transaction's ``review_*`` columns show the one waiting, or the last decided."""

    __tablename__ = "transaction_reviews"
    __table_args__ = (
        UniqueConstraint("txn_id", "report_key", name="uq_transaction_reviews_report"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("transactions.id"))
    reason: Mapped[str] = mapped_column(String(40))  # a state_machine.Review value
    report_key: Mapped[str] = mapped_column(String(400))
    detail: Mapped[dict[str, Any]]  # what the PSP reported, as review_detail
    opened_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    captured_amount: Mapped[Decimal | None] = mapped_column(Numeric(24, 8))
    captured_currency: Mapped[str | None] = mapped_column(String(3))


class TransactionEvent(Base):
    __tablename__ = "transaction_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("transactions.id"), index=True)
    from_status: Mapped[Status | None] = mapped_column(_enum(Status))
    to_status: Mapped[Status] = mapped_column(_enum(Status))
    source: Mapped[Source] = mapped_column(_enum(Source))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class OutboxMessage(Base):
    """A task to send after commit; deleted once it left (storage.outbox, workers.relay)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_created", "created_at", postgresql_where=text("parked_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]]
    # The lane it goes to (connxt.tasks); None: the task's default queue.
    queue: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now()
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InboxMessage(Base):
    """A PSP notification exactly as received, unique on the PSP's event identity."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("psp_id", "event_key", name="uq_inbox_psp_event"),
        Index("ix_inbox_pending", "received_at", postgresql_where=text("processed_at IS NULL")),
        # Retention (storage.retention): processed rows, oldest first.
        Index(
            "ix_inbox_processed", "processed_at", postgresql_where=text("processed_at IS NOT NULL")
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    psp_id: Mapped[str] = mapped_column(ForeignKey("psps.id"))
    event_key: Mapped[str] = mapped_column(String(300))
    txn_id: Mapped[str | None] = mapped_column(String(40), index=True)
    headers: Mapped[dict[str, Any]]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    verified: Mapped[bool] = mapped_column(server_default=text("false"))
    received_at: Mapped[datetime] = _now()
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)  # retention
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # What the request created, written in the same database transaction: an answer lost
    # after the commit is rebuilt from it instead of creating the resource again.
    resource_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = _now()


class Notification(Base):
    """One merchant notification (a terminal transition or a review), delivered with retries;
    or one about an environment rather than a transaction (``reconciliation.completed``:
    ``recon_run_id`` and its own ``payload``, no ``txn_id``)."""

    __tablename__ = "notifications"
    __table_args__ = (
        # One per (transaction, event type) for a terminal status; a review's is keyed by
        # its review (0008_captured_and_reviews), a reconciliation's by its run (0014).
        UniqueConstraint(
            "txn_id",
            "event_type",
            "review_id",
            "recon_run_id",
            name="uq_notifications_txn_event",
            postgresql_nulls_not_distinct=True,
        ),
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    txn_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    event_type: Mapped[str] = mapped_column(String(60))
    # The review it tells of (transaction.review, transaction.late_success); None for a
    # terminal status, and for reviews opened before reviews had rows of their own.
    review_id: Mapped[str | None] = mapped_column(ForeignKey("transaction_reviews.id"))
    recon_run_id: Mapped[str | None] = mapped_column(String(40))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[NotificationStatus] = mapped_column(_enum(NotificationStatus))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who holds the notification: the sweep's claim on it while due (claim_due), spent by
    # the one delivery it was sent for; then that delivery's lease (lease_many), whose
    # attempt alone may record what became of it (record_deliveries).
    lease_token: Mapped[str | None] = mapped_column(String(32))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class NotificationAttempt(Base):
    __tablename__ = "notification_attempts"
    __table_args__ = (Index("ix_notification_attempts_created", "created_at"),)  # retention
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    elapsed_ms: Mapped[float | None] = mapped_column(Numeric(10, 1))
    created_at: Mapped[datetime] = _now()


class AuditEntry(Base):
    """One administrative act (storage.audit): append-only, the database refuses UPDATE,
    DELETE and TRUNCATE (migration 0008)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_environment", "environment_id", "id"),
        Index("ix_audit_log_at", "at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(Text)  # "cli alice@host", "console operator bob", ...
    action: Mapped[str] = mapped_column(String(80))  # dotted: "psp.created", "token.revoked"
    subject: Mapped[str | None] = mapped_column(Text)  # what it was done to: an id, a name
    brand_id: Mapped[str | None] = mapped_column(String(40))
    environment_id: Mapped[str | None] = mapped_column(String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
