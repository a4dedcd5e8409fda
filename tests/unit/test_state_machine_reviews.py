"""Holding for an operator: a success for other money, a success after failure, and the
operator's decision — all pure, all without ever moving a terminal status."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine import (
    OPERATOR_EVENTS,
    TERMINAL,
    Command,
    Event,
    Review,
    Status,
    apply,
    is_legal_step,
)

S, E = Status, Event
OPEN = [S.CREATED, S.INITIATED, S.PG_ACCEPTED]
_settings = settings(database=None, max_examples=400, deadline=None)


def _path(decision) -> list[Status]:
    return [decision.steps[0].from_status, *(s.to_status for s in decision.steps)]


@pytest.mark.parametrize("status", OPEN)
def test_a_success_for_other_money_holds_an_open_transaction(status: Status) -> None:
    decision = apply(status, E.PSP_MISMATCH)
    assert decision.noop and decision.status == status and decision.commands == ()
    assert decision.review is Review.AMOUNT_MISMATCH and not decision.conflict


@pytest.mark.parametrize("status", [S.FAILED, S.REJECTED])
@pytest.mark.parametrize("event", [E.PSP_COMPLETED, E.PSP_MISMATCH])
def test_a_success_after_failure_is_a_late_success(status: Status, event: Event) -> None:
    decision = apply(status, event)
    assert decision.noop and decision.status == status and decision.commands == ()
    assert decision.review is Review.LATE_SUCCESS and decision.conflict


def test_other_money_after_success_is_a_conflict_not_a_review() -> None:
    decision = apply(S.SUCCESS, E.PSP_MISMATCH)
    assert decision.noop and decision.conflict and decision.review is None


def test_only_those_ever_ask_for_review() -> None:
    reviewed = {
        (s, e): apply(s, e).review
        for s, e in itertools.product(Status, Event)
        if apply(s, e).review is not None
    }
    assert reviewed == {
        **{(s, E.PSP_MISMATCH): Review.AMOUNT_MISMATCH for s in OPEN},
        **{
            (s, e): Review.LATE_SUCCESS
            for s in (S.FAILED, S.REJECTED)
            for e in (E.PSP_COMPLETED, E.PSP_MISMATCH)
        },
    }


@pytest.mark.parametrize("status", OPEN)
@pytest.mark.parametrize("event", [e for e in Event if e not in OPERATOR_EVENTS])
def test_nothing_but_an_operator_moves_a_held_transaction(status: Status, event: Event) -> None:
    decision = apply(status, event, held=True)
    assert decision.noop and decision.status == status and decision.commands == ()
    assert decision.review is None  # held already: never a second review


@pytest.mark.parametrize(
    ("start", "event", "path"),
    [
        (S.PG_ACCEPTED, E.RESOLVE_SUCCESS, [S.PG_ACCEPTED, S.SUCCESS]),
        (S.INITIATED, E.RESOLVE_SUCCESS, [S.INITIATED, S.PG_ACCEPTED, S.SUCCESS]),
        (S.PG_ACCEPTED, E.RESOLVE_FAILED, [S.PG_ACCEPTED, S.FAILED]),
        (S.INITIATED, E.RESOLVE_FAILED, [S.INITIATED, S.PG_ACCEPTED, S.FAILED]),
        (S.CREATED, E.RESOLVE_FAILED, [S.CREATED, S.INITIATED, S.PG_ACCEPTED, S.FAILED]),
    ],
)
def test_the_operator_decides_a_held_transaction(start, event, path) -> None:
    decision = apply(start, event, held=True)
    assert not decision.noop and _path(decision) == path
    assert all(is_legal_step(step.from_status, step.to_status) for step in decision.steps)
    assert decision.commands == (Command.NOTIFY_MERCHANT,)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", sorted(OPERATOR_EVENTS))
def test_an_operator_event_without_a_hold_changes_nothing(status: Status, event: Event) -> None:
    for held in (False, True) if status in TERMINAL else (False,):
        decision = apply(status, event, held=held)
        assert decision.noop and decision.status == status and not decision.conflict
        assert decision.review is None


@_settings
@given(st.lists(st.sampled_from(Event), max_size=30))
def test_a_hold_lasts_until_the_operator_and_terminals_stay_final(stream: list[Event]) -> None:
    """Fold any stream, holding on an amount mismatch as storage does: while held only an
    operator moves it, every step is legal, and a terminal status never changes."""
    status, held, final = S.NEW, False, None
    for event in stream:
        decision = apply(status, event, held=held)
        if held and event not in OPERATOR_EVENTS:
            assert decision.noop and decision.review is None
        for step in decision.steps:
            assert is_legal_step(step.from_status, step.to_status)
        if final is not None:
            assert decision.noop and decision.status == final and decision.commands == ()
        if decision.review is Review.AMOUNT_MISMATCH:
            held = True
        if not decision.noop and event in OPERATOR_EVENTS:
            held = False
            assert decision.status in TERMINAL
        status = decision.status
        if status in TERMINAL and final is None:
            final = status
    assert not (held and status in TERMINAL)
