"""Settlement reconciliation in answers: runs, their summary, their differences (shaped by
storage/recon/views.py; the suite checks every answer against these models)."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api_gateway.openapi import ResponseModel, Stamp

Amount = str  # decimal text, exact: "49.00"
Class = Literal[
    "matched",
    "amount_mismatch",
    "pending",
    "missing_at_psp",
    "missing_at_connxt",
    "status_mismatch",
    "duplicate",
]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    pspId: str = Field(min_length=1, max_length=40)
    date: datetime.date = Field(description="The PSP's settlement day, in its own time zone")


class DifferenceCounts(ResponseModel):
    """Differences found, by class (each a line or, for pending and missing_at_psp, a
    transaction)."""

    amount_mismatch: int
    pending: int
    missing_at_psp: int
    missing_at_connxt: int
    status_mismatch: int
    duplicate: int


class Totals(ResponseModel):
    count: int
    gross: Amount
    fee: Amount
    net: Amount = Field(description="What the lines did to the balance (negative: taken)")


class Summary(ResponseModel):
    runId: str
    pspId: str
    date: str
    lines: int = Field(description="Lines in the PSP's report")
    transactions: int = Field(description="Transactions the run looked at")
    matched: int = Field(description="Lines matched")
    differences: DifferenceCounts
    matchedShare: float = Field(description="matched / (matched + differences)")
    linesByClass: dict[str, int]
    transactionsByClass: dict[str, int]
    totals: dict[str, Totals] = Field(description="Per currency, every line")
    totalsByClass: dict[str, dict[str, Totals]]
    adjustments: dict[str, dict[str, Totals]] = Field(
        description="Chargebacks and fee adjustments, per currency"
    )
    durationMs: int


class Run(ResponseModel):
    id: str
    pspId: str
    date: str
    status: Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "SUPERSEDED"]
    trigger: Literal["schedule", "api", "cli", "console"]
    attempts: int
    error: str | None = Field(description="Why the run failed (the report unreadable, ...)")
    lines: int | None
    matched: int | None
    matchedShare: float | None
    differences: DifferenceCounts | None
    summary: Summary | None
    createdAt: Stamp
    startedAt: Stamp | None
    finishedAt: Stamp | None


class Runs(ResponseModel):
    items: list[Run]
    nextCursor: str | None


class Ours(ResponseModel):
    status: str | None
    action: str | None
    amount: Amount | None
    currency: str | None


class Theirs(ResponseModel):
    type: str | None
    pspPaymentId: str | None
    reference: str | None = Field(description="Our transaction id, as the PSP wrote it")
    gross: Amount | None
    fee: Amount | None
    net: Amount | None
    currency: str | None
    settledAt: Stamp | None


class Resolution(ResponseModel):
    note: str
    resolvedBy: str
    resolvedAt: Stamp


class Difference(ResponseModel):
    id: int
    runId: str
    pspId: str
    date: str
    class_: Class = Field(alias="class")
    state: Literal["open", "resolved", "cleared"] = Field(
        description="open; resolved with a note; cleared by a later run that no longer finds it"
    )
    txnId: str | None
    ours: Ours | None = Field(description="Our transaction as the run saw it; null if none")
    theirs: Theirs | None = Field(description="The PSP's line; null if it has none")
    action: Literal["inquiry", "review"] | None = Field(
        description="What was done about it automatically"
    )
    firstSeenAt: Stamp
    resolution: Resolution | None


class Differences(ResponseModel):
    items: list[Difference]
    nextCursor: str | None
