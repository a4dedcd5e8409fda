"""Which days of which PSP account are due for reconciliation, kept in ``recon_days``.

Day D of an account is run first at ``recon_hour`` (UTC) on the day after (once D has
ended in the PSP's time zone), then again at that hour on each of the next
``recon_lookback_days`` days, to catch what settled late. ``seed`` writes a row for every
day whose runs are not all done yet, so a beat that was down, or starts afresh, finds the
days it missed and runs them at once; ``claim_due`` hands each due day out once
(``SKIP LOCKED``, with a lease that a lost message outlives); ``after_scheduled_run``
books the next slot, or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

# A claimed day comes due again after this if its run never reported back.
CLAIM_LEASE = timedelta(minutes=30)
# A scheduled run that failed (the PSP away, its report broken) is tried again after this.
RETRY_AFTER = timedelta(minutes=15)

_SEED = """
INSERT INTO recon_days (psp_id, day, brand_id, environment_id, scheduled, next_run_at)
SELECT p.id, d.day, p.brand_id, p.environment_id, TRUE,
       greatest((CAST(d.day + 1 AS timestamp) + make_interval(hours => :hour))
                  AT TIME ZONE 'UTC',
                CAST(d.day + 1 AS timestamp) AT TIME ZONE z.zone)
FROM psps p
JOIN flow_targets ft ON ft.id = p.flow_target_id
JOIN unnest(CAST(:targets AS text[]), CAST(:zones AS text[])) AS z(target, zone)
  ON z.target = ft.name
CROSS JOIN LATERAL (
  SELECT CAST(g AS date) AS day
  FROM generate_series(CAST(:first_day AS timestamp), CAST(:last_day AS timestamp),
                       interval '1 day') g
) d
WHERE p.status = 'ENABLED' AND d.day >= CAST(p.created_at AT TIME ZONE 'UTC' AS date) - 1
ON CONFLICT (psp_id, day) DO UPDATE SET scheduled = TRUE, next_run_at = EXCLUDED.next_run_at
  WHERE NOT recon_days.scheduled
"""

_CLAIM = """
WITH due AS (
  SELECT psp_id, day FROM recon_days
  WHERE next_run_at <= now()
  ORDER BY next_run_at LIMIT :limit
  FOR UPDATE SKIP LOCKED
)
UPDATE recon_days d SET next_run_at = now() + make_interval(secs => :lease), updated_at = now()
FROM due WHERE d.psp_id = due.psp_id AND d.day = due.day
RETURNING d.psp_id, d.day
"""


@dataclass(frozen=True)
class DueDay:
    psp_id: str
    day: date


def seed(session: Session, zones: dict[str, str], now: datetime, hour: int, lookback: int) -> int:
    """Rows for every enabled account of the connectors in ``zones`` (flow target name →
    its settlement time zone) and every day whose scheduled runs are not over: from
    ``lookback + 1`` days before today to yesterday (UTC). A day the schedule has taken on
    is left as it is; one only run on demand so far is taken on. How many were taken on."""
    today = now.astimezone(UTC).date()
    # An INSERT's result is a CursorResult, which counts rows; Session.execute is typed for
    # any statement, so it says only Result.
    created = cast(
        CursorResult[Any],
        session.execute(
            text(_SEED),
            {
                "targets": list(zones),
                "zones": list(zones.values()),
                "first_day": today - timedelta(days=lookback + 1),
                "last_day": today - timedelta(days=1),
                "hour": hour,
            },
        ),
    ).rowcount
    return created or 0


def claim_due(session: Session, limit: int = 100) -> list[DueDay]:
    rows = session.execute(
        text(_CLAIM), {"limit": limit, "lease": CLAIM_LEASE.total_seconds()}
    ).all()
    return [DueDay(row.psp_id, row.day) for row in rows]


def next_slot(day: date, after: datetime, hour: int, lookback: int) -> datetime | None:
    """The next scheduled run of ``day`` after ``after``: the next ``hour`` o'clock (UTC),
    if it is not past the day's last slot (``lookback`` days after the first)."""
    slot = datetime.combine(after.astimezone(UTC).date(), time(hour), UTC)
    if slot <= after:
        slot += timedelta(days=1)
    last = datetime.combine(day + timedelta(days=1 + lookback), time(hour), UTC)
    return slot if slot <= last else None


def after_scheduled_run(
    session: Session, psp_id: str, day: date, succeeded: bool, hour: int, lookback: int
) -> None:
    """Book the day's next slot after a scheduled run: tomorrow's (or none) when it
    completed, a retry shortly when it failed."""
    now = datetime.now(UTC)
    upcoming = next_slot(day, now, hour, lookback) if succeeded else now + RETRY_AFTER
    session.execute(
        text(
            "UPDATE recon_days SET next_run_at = :next, updated_at = now()"
            " WHERE psp_id = :psp AND day = :day"
        ),
        {"next": upcoming, "psp": psp_id, "day": day},
    )
