"""How each PSP account did over a recent window: outcomes, PSP latency and errors.

Read from the transactions themselves, so every process sees the same figures whatever
it exported: the transactions created in the window, their statuses, and the PSP
exchanges each keeps (``psp_meta``, already redacted: the calls behind the PSP's latest
answer, initiation or inquiry). The window is read per environment through the
(environment, created_at) index, never by a scan of every transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

_HEALTH = """
WITH recent AS (
  SELECT t.psp_id, t.status, t.psp_meta
  FROM environments e
  CROSS JOIN LATERAL (
    SELECT psp_id, status, psp_meta FROM transactions
    WHERE environment_id = e.id AND created_at >= now() - make_interval(secs => :window)
  ) t
  WHERE (CAST(:brand AS text) IS NULL OR e.brand_id = :brand)
    AND (CAST(:environment AS text) IS NULL OR e.id = :environment)
),
outcomes AS (
  SELECT psp_id, count(*) AS created,
         count(*) FILTER (WHERE status = 'SUCCESS') AS succeeded,
         count(*) FILTER (WHERE status = 'FAILED') AS failed,
         count(*) FILTER (WHERE status = 'REJECTED') AS rejected
  FROM recent GROUP BY psp_id
),
calls AS (
  SELECT r.psp_id, count(*) AS calls,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY (x ->> 'elapsedMs')::float) AS p50_ms,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY (x ->> 'elapsedMs')::float) AS p99_ms,
         count(*) FILTER (
           WHERE x ->> 'error' IS NOT NULL OR (x ->> 'statusCode')::int >= 500
         ) AS errors,
         count(*) FILTER (WHERE (x ->> 'statusCode')::int BETWEEN 400 AND 499) AS refusals
  FROM recent r
  CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.psp_meta -> 'http') = 'array' THEN r.psp_meta -> 'http'
         ELSE '[]'::jsonb END
  ) AS x
  GROUP BY r.psp_id
)
SELECT p.id, p.name, p.status, p.brand_id, p.environment_id, ft.name AS connector,
       coalesce(o.created, 0) AS created, coalesce(o.succeeded, 0) AS succeeded,
       coalesce(o.failed, 0) AS failed, coalesce(o.rejected, 0) AS rejected,
       coalesce(c.calls, 0) AS calls, c.p50_ms, c.p99_ms,
       coalesce(c.errors, 0) AS errors, coalesce(c.refusals, 0) AS refusals
FROM psps p
JOIN flow_targets ft ON ft.id = p.flow_target_id
LEFT JOIN outcomes o ON o.psp_id = p.id
LEFT JOIN calls c ON c.psp_id = p.id
WHERE (CAST(:brand AS text) IS NULL OR p.brand_id = :brand)
  AND (CAST(:environment AS text) IS NULL OR p.environment_id = :environment)
ORDER BY coalesce(o.created, 0) DESC, p.name, p.id
"""


@dataclass(frozen=True)
class PspHealth:
    """One PSP account over the window."""

    psp_id: str
    name: str
    status: str  # the account's: ENABLED | DISABLED
    brand_id: str
    environment_id: str
    connector: str
    created: int  # transactions created in the window
    succeeded: int
    failed: int
    rejected: int
    calls: int  # PSP round trips kept with those transactions
    p50_ms: float | None
    p99_ms: float | None
    errors: int  # no usable answer: transport errors, timeouts, 5xx
    refusals: int  # 4xx answers

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.rejected

    @property
    def success_rate(self) -> float | None:
        """Of the transactions that finished, the share that succeeded."""
        return self.succeeded / self.finished if self.finished else None


def psp_health(
    session: Session, scope: tuple[str, str] | None, window: timedelta = timedelta(hours=1)
) -> list[PspHealth]:
    """Every PSP account of one (brand, environment), or of every tenant when ``scope`` is
    None (operators), busiest first."""
    brand, environment = scope if scope is not None else (None, None)
    rows = session.execute(
        text(_HEALTH),
        {"window": window.total_seconds(), "brand": brand, "environment": environment},
    ).all()
    return [
        PspHealth(
            psp_id=row.id,
            name=row.name,
            status=row.status,
            brand_id=row.brand_id,
            environment_id=row.environment_id,
            connector=row.connector,
            created=row.created,
            succeeded=row.succeeded,
            failed=row.failed,
            rejected=row.rejected,
            calls=row.calls,
            p50_ms=row.p50_ms,
            p99_ms=row.p99_ms,
            errors=row.errors,
            refusals=row.refusals,
        )
        for row in rows
    ]
