"""The transaction state machine: explicit paths, no-ops, conflicts, and folded event streams."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine import (
    TERMINAL,
    TRANSITIONS,
    Command,
    Decision,
    Event,
    Source,
    Status,
    Step,
    apply,
    is_legal_step,
)

S, E = Status, Event
ALL_PAIRS = list(itertools.product(Status, Event))
NON_TERMINAL = [s for s in Status if s not in TERMINAL]

# No example database: it would write a .hypothesis/ folder into the repository.
_settings = settings(database=None, max_examples=400, deadline=None)
events = st.lists(st.sampled_from(Event), max_size=25)


def _path(decision: Decision) -> list[Status]:
    """The statuses a decision walked through, start included."""
    if not decision.steps:
        return []
    return [decision.steps[0].from_status, *(step.to_status for step in decision.steps)]


def _reachable_from_new() -> set[Status]:
    seen, todo = {S.NEW}, [S.NEW]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- the tables ---------------------------------------------------------------------------


def test_transition_table_is_exactly_the_designed_one() -> None:
    expected = {
        S.NEW: {S.CREATED},
        S.CREATED: {S.INITIATED, S.FAILED},
        S.INITIATED: {S.PG_ACCEPTED, S.PG_REJECTED, S.FAILED},
        S.PG_ACCEPTED: {S.SUCCESS, S.FAILED},
        S.PG_REJECTED: {S.REJECTED},
        S.SUCCESS: set(),
        S.FAILED: set(),
        S.REJECTED: set(),
    }
    assert expected == TRANSITIONS
    assert {S.SUCCESS, S.FAILED, S.REJECTED} == TERMINAL


def test_is_legal_step() -> None:
    assert is_legal_step(S.INITIATED, S.PG_REJECTED)
    assert is_legal_step(S.CREATED, S.FAILED)
    assert not is_legal_step(S.INITIATED, S.SUCCESS)  # must go through PG_ACCEPTED
    assert not is_legal_step(S.PG_REJECTED, S.FAILED)
    assert not is_legal_step(S.SUCCESS, S.FAILED)
    assert not is_legal_step(S.CREATED, S.CREATED)


def test_enum_values_are_the_stored_strings() -> None:
    assert [s.value for s in Status] == [s.name for s in Status]
    assert Source.PSP_RESPONSE == "psp_response" and Source.OPERATOR == "operator"
    assert Command.INITIATE_AT_PSP == "initiate_at_psp"
    assert Command.NOTIFY_MERCHANT == "notify_merchant"


# --- explicit paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "event", "path"),
    [
        (S.NEW, E.CREATE, [S.NEW, S.CREATED]),
        (S.CREATED, E.INITIATE, [S.CREATED, S.INITIATED]),
        (S.INITIATED, E.PSP_ACCEPTED, [S.INITIATED, S.PG_ACCEPTED]),
        (S.CREATED, E.PSP_ACCEPTED, [S.CREATED, S.INITIATED, S.PG_ACCEPTED]),
        (S.INITIATED, E.PSP_DECLINED, [S.INITIATED, S.PG_REJECTED, S.REJECTED]),
        (S.CREATED, E.PSP_DECLINED, [S.CREATED, S.INITIATED, S.PG_REJECTED, S.REJECTED]),
        (S.PG_REJECTED, E.PSP_DECLINED, [S.PG_REJECTED, S.REJECTED]),
        (S.PG_ACCEPTED, E.PSP_COMPLETED, [S.PG_ACCEPTED, S.SUCCESS]),
        (S.INITIATED, E.PSP_COMPLETED, [S.INITIATED, S.PG_ACCEPTED, S.SUCCESS]),
        (S.CREATED, E.PSP_COMPLETED, [S.CREATED, S.INITIATED, S.PG_ACCEPTED, S.SUCCESS]),
        (S.PG_ACCEPTED, E.PSP_FAILED, [S.PG_ACCEPTED, S.FAILED]),
        (S.INITIATED, E.PSP_FAILED, [S.INITIATED, S.PG_ACCEPTED, S.FAILED]),
        (S.CREATED, E.PSP_FAILED, [S.CREATED, S.INITIATED, S.PG_ACCEPTED, S.FAILED]),
        (S.INITIATED, E.PSP_NOT_FOUND, [S.INITIATED, S.FAILED]),
        (S.CREATED, E.EXPIRE, [S.CREATED, S.FAILED]),
        (S.INITIATED, E.EXPIRE, [S.INITIATED, S.FAILED]),
        (S.PG_ACCEPTED, E.EXPIRE, [S.PG_ACCEPTED, S.FAILED]),
    ],
)
def test_event_takes_the_designed_path(start: Status, event: Event, path: list[Status]) -> None:
    decision = apply(start, event)
    assert _path(decision) == path
    assert decision.steps == tuple(Step(a, b) for a, b in itertools.pairwise(path))
    assert decision.status == path[-1]
    assert not decision.noop and not decision.conflict
    assert decision.reason


def test_create_issues_initiate_and_nothing_else_does() -> None:
    assert apply(S.NEW, E.CREATE).commands == (Command.INITIATE_AT_PSP,)
    for status, event in ALL_PAIRS:
        issued = Command.INITIATE_AT_PSP in apply(status, event).commands
        assert issued == ((status, event) == (S.NEW, E.CREATE))


def test_plain_strings_from_the_database_are_accepted() -> None:
    assert apply("INITIATED", "psp_completed") == apply(S.INITIATED, E.PSP_COMPLETED)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        apply("PAID", E.PSP_COMPLETED)  # type: ignore[arg-type]


# --- no-ops in open states ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.PG_ACCEPTED, E.PSP_NOT_FOUND),  # the PSP said it accepted; don't trust a not-found
        (S.CREATED, E.PSP_NOT_FOUND),  # the initiate task may simply not have run yet
        (S.INITIATED, E.CREATE),
        (S.PG_ACCEPTED, E.INITIATE),
        (S.PG_ACCEPTED, E.PSP_DECLINED),
        (S.CREATED, E.CREATE),
        (S.INITIATED, E.INITIATE),
        (S.PG_ACCEPTED, E.PSP_ACCEPTED),
        (S.NEW, E.INITIATE),  # only the API's CREATE leaves NEW
        (S.NEW, E.PSP_COMPLETED),
        (S.NEW, E.EXPIRE),
        (S.PG_REJECTED, E.PSP_COMPLETED),
    ],
)
def test_out_of_place_event_is_a_plain_noop(status: Status, event: Event) -> None:
    decision = apply(status, event)
    assert (decision.status, decision.steps, decision.commands) == (status, (), ())
    assert decision.noop and not decision.conflict


@pytest.mark.parametrize("status", list(Status))
def test_unknown_outcome_never_moves(status: Status) -> None:
    decision = apply(status, E.PSP_UNKNOWN)
    assert decision.noop and decision.status == status and decision.steps == ()
    assert not decision.conflict


# --- terminals and conflicts --------------------------------------------------------------

CONFLICTS = {
    (S.SUCCESS, E.PSP_DECLINED),
    (S.SUCCESS, E.PSP_FAILED),
    (S.SUCCESS, E.PSP_NOT_FOUND),
    (S.SUCCESS, E.EXPIRE),
    (S.FAILED, E.PSP_COMPLETED),
    (S.REJECTED, E.PSP_COMPLETED),
    (S.SUCCESS, E.PSP_MISMATCH),  # settled, and now the PSP names other money
    (S.FAILED, E.PSP_MISMATCH),
    (S.REJECTED, E.PSP_MISMATCH),
}


@pytest.mark.parametrize(("status", "event"), itertools.product(sorted(TERMINAL), Event))
def test_terminal_never_moves(status: Status, event: Event) -> None:
    decision = apply(status, event)
    assert decision.status == status
    assert decision.noop and decision.steps == () and decision.commands == ()
    assert decision.conflict == ((status, event) in CONFLICTS)
    assert status in decision.reason


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.SUCCESS, E.PSP_COMPLETED),
        (S.FAILED, E.PSP_FAILED),
        (S.REJECTED, E.PSP_DECLINED),
        (S.FAILED, E.EXPIRE),
    ],
)
def test_repeat_of_the_deciding_event_is_not_a_conflict(status: Status, event: Event) -> None:
    decision = apply(status, event)
    assert decision.noop and not decision.conflict
    assert "duplicate" in decision.reason


def test_conflicts_only_ever_happen_in_terminals() -> None:
    flagged = {(s, e) for s, e in ALL_PAIRS if apply(s, e).conflict}
    assert flagged == CONFLICTS
    assert all(apply(s, e).noop for s, e in flagged)


# --- every pair ---------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS)
def test_every_pair_is_a_consistent_decision(status: Status, event: Event) -> None:
    decision = apply(status, event)
    assert isinstance(decision.status, Status)
    assert decision.noop == (decision.steps == ())
    if decision.noop:
        assert decision.status == status and decision.commands == ()
    else:
        assert decision.steps[0].from_status == status
        assert decision.steps[-1].to_status == decision.status
        assert all(is_legal_step(step.from_status, step.to_status) for step in decision.steps)
    # NOTIFY_MERCHANT exactly when entering a terminal status from an open one.
    entered_terminal = status not in TERMINAL and decision.status in TERMINAL
    assert (Command.NOTIFY_MERCHANT in decision.commands) == entered_terminal
    assert decision.commands.count(Command.NOTIFY_MERCHANT) <= 1


# --- folded event streams -----------------------------------------------------------------


@_settings
@given(events)
def test_any_event_stream_from_new_stays_legal(stream: list[Event]) -> None:
    reachable = _reachable_from_new()
    status, walked = S.NEW, [S.NEW]
    for event in stream:
        before = status
        decision = apply(status, event)
        previous = before
        for step in decision.steps:
            assert step.to_status in TRANSITIONS[step.from_status]
            assert step.from_status == previous  # steps chain, starting at the old status
            previous = step.to_status
            walked.append(step.to_status)
        assert decision.status == previous  # the last step's to_status, or unchanged
        if before in TERMINAL:
            assert decision.status == before and decision.noop
        status = decision.status
        assert status in reachable
    # Every status ever held was reached by legal steps from NEW, one after another.
    assert all(is_legal_step(a, b) for a, b in itertools.pairwise(walked))
    assert walked[-1] == status


@_settings
@given(events, st.sampled_from(Event))
def test_the_same_event_twice_in_a_row_is_a_noop(stream: list[Event], event: Event) -> None:
    status = S.NEW
    for earlier in stream:
        status = apply(status, earlier).status
    first = apply(status, event)
    second = apply(first.status, event)
    assert second.noop and second.steps == () and second.status == first.status
    assert second.commands == ()  # a repeat never notifies the merchant twice
    if first.noop:
        assert second == first  # a repeated no-op (conflict or not) decides the same way


@_settings
@given(events)
def test_once_terminal_the_status_is_final(stream: list[Event]) -> None:
    status, final = S.NEW, None
    for event in stream:
        status = apply(status, event).status
        if final is not None:
            assert status == final
        elif status in TERMINAL:
            final = status
