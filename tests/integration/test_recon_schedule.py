"""Which days are due is kept in the database (storage.recon.schedule, workers.recon): a
beat that starts afresh, or was away for days, finds every day it has not run yet."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from connxt.settings import get_settings
from storage.db import session_scope
from storage.recon import schedule
from tests.support.flows import create_psp, target
from workers import recon

# Reads the outbox and runs the sweeps itself.
pytestmark = pytest.mark.usefixtures("background_held")


@pytest.fixture
def now(monkeypatch) -> datetime:
    """The test's clock, read as it starts and given to the schedule, with the runs' hour
    at midnight UTC: every day of the look-back is then due whatever the hour the suite
    runs at (at the default 04:00, yesterday is not due before 04:00), and a run that
    crosses midnight between this file's import and its tests asks for the days expected."""
    monkeypatch.setattr(get_settings(), "recon_hour", 0)
    return datetime.now(UTC)


@pytest.fixture
def accounts(client, tenant):
    """A Paymaxis and a Sticpay account, made ten days ago."""
    headers = tenant[1]
    made = [
        create_psp(client, headers, target(client, headers, "Paymaxis"), {"apiKey": "pk_s"}, "S1"),
        create_psp(
            client,
            headers,
            target(client, headers, "Sticpay"),
            {"merchantEmail": "s@example.com", "apiKey": "k"},
            "S2",
        ),
    ]
    with session_scope() as session:
        session.execute(
            text("UPDATE psps SET created_at = now() - interval '10 days' WHERE id = ANY(:ids)"),
            {"ids": [p["id"] for p in made]},
        )
    return [p["id"] for p in made]


def due_days() -> dict[tuple[str, date], datetime | None]:
    with session_scope() as session:
        rows = session.execute(text("SELECT psp_id, day, next_run_at FROM recon_days")).all()
    return {(r.psp_id, r.day): r.next_run_at for r in rows}


def scheduled_runs() -> set[tuple[str, date]]:
    """(account, day) of every run the schedule asked for (a stack's worker, if one runs,
    may be doing them already: their rows stay)."""
    with session_scope() as session:
        rows = session.execute(
            text("SELECT psp_id, day FROM recon_runs WHERE trigger = 'schedule'")
        ).all()
    return {(r.psp_id, r.day) for r in rows}


def test_next_slot_is_the_days_hour_until_the_look_back_is_over():
    day = date(2025, 1, 10)
    first = schedule.next_slot(day, datetime(2025, 1, 11, 1, tzinfo=UTC), hour=4, lookback=2)
    assert first == datetime(2025, 1, 11, 4, tzinfo=UTC)
    after_first = schedule.next_slot(day, first, hour=4, lookback=2)
    assert after_first == datetime(2025, 1, 12, 4, tzinfo=UTC)
    assert schedule.next_slot(day, datetime(2025, 1, 13, 4, 1, tzinfo=UTC), 4, 2) is None


def test_a_fresh_beat_runs_every_day_it_missed_once(accounts, now):
    lookback = get_settings().recon_lookback_days
    sent = recon.schedule_due(now)
    expected = {now.date() - timedelta(days=n) for n in range(1, lookback + 2)}
    assert {day for (_psp, day) in due_days()} == expected
    # Every missed day of each account is due at once, and run once.
    assert scheduled_runs() == {(psp, day) for psp in accounts for day in expected}
    assert len(sent) == len(set(sent)) == 2 * len(expected)
    assert recon.schedule_due(now) == []  # claimed: not sent again while they run


def test_a_completed_scheduled_run_books_the_next_slot_or_none(accounts, now):
    recon.schedule_due(now)
    psp_id = accounts[0]
    settings = get_settings()
    today = now.date()
    young, old = today - timedelta(days=1), today - timedelta(days=settings.recon_lookback_days + 1)
    with session_scope() as session:
        for day in (young, old):
            schedule.after_scheduled_run(
                session, psp_id, day, True, settings.recon_hour, settings.recon_lookback_days
            )
        schedule.after_scheduled_run(
            session, psp_id, today - timedelta(days=2), False, settings.recon_hour, 0
        )
    days = due_days()
    assert days[(psp_id, young)].hour == settings.recon_hour and days[(psp_id, young)] > now
    assert days[(psp_id, old)] is None  # its last slot is behind it
    retry = days[(psp_id, today - timedelta(days=2))]
    assert now < retry <= datetime.now(UTC) + schedule.RETRY_AFTER


def test_a_day_first_run_on_demand_is_still_taken_on_by_the_schedule(client, tenant, accounts, now):
    psp_id, day = accounts[0], now.date() - timedelta(days=1)
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO recon_days (psp_id, day, brand_id, environment_id)"
                " SELECT id, :day, brand_id, environment_id FROM psps WHERE id = :psp"
            ),
            {"day": day, "psp": psp_id},
        )
    recon.schedule_due(now)
    assert (psp_id, day) in scheduled_runs()


def test_a_run_whose_process_died_is_sent_again(accounts, now, monkeypatch):
    monkeypatch.setattr(get_settings(), "recon_stale_after_seconds", 30)
    sent = recon.schedule_due(now)
    assert sent
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE recon_runs SET status = 'RUNNING', started_at = now() - interval '1 minute'"
            )
        )
        session.execute(text("DELETE FROM outbox"))
    again = recon.schedule_due(now)
    assert sorted(again) == sorted(sent)
