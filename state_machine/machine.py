"""``apply(status, event)``: the pure decision the workers and the API act on."""

import itertools
from collections import deque
from dataclasses import dataclass

from state_machine.events import OPERATOR_EVENTS, Command, Event, Review
from state_machine.statuses import TERMINAL, TRANSITIONS, Status


@dataclass(frozen=True)
class Step:
    """One single, legal step; the caller records one event row per step."""

    from_status: Status
    to_status: Status


@dataclass(frozen=True)
class Decision:
    """What an event does to a transaction; a no-op is a decision too, never an error."""

    status: Status  # the status after applying (the input status for a no-op)
    steps: tuple[Step, ...]  # every single step taken, in order (empty for a no-op)
    commands: tuple[Command, ...]  # to schedule after the steps are committed
    noop: bool  # nothing changes
    conflict: bool  # contradicts a terminal outcome: log a warning for review
    reason: str  # one short sentence for the log and the event row
    # Set on a no-op that must be held for an operator: the status stays, a human decides.
    review: Review | None = None


@dataclass(frozen=True)
class _Route:
    """Where an event drives a transaction, from which statuses, and what follows."""

    target: Status
    starts: tuple[Status, ...]  # anywhere else the event is an explicit no-op
    via: Status | None = None  # a status the path must pass through on the way
    then: tuple[Command, ...] = ()
    # Where the event would settle the transaction but must not: hold it for review instead.
    hold: Review | None = None


_OPEN = (Status.CREATED, Status.INITIATED, Status.PG_ACCEPTED)

# The one event table. Paths are not written out: they are walked through TRANSITIONS.
# A PSP answer can overtake the commit of our own INITIATED step (a fast webhook), so PSP
# events also start from CREATED and take the implied path through INITIATED.
ROUTES: dict[Event, _Route | None] = {
    # Only the API can vouch for a request, so nothing else moves a transaction out of NEW.
    Event.CREATE: _Route(Status.CREATED, (Status.NEW,), then=(Command.INITIATE_AT_PSP,)),
    Event.INITIATE: _Route(Status.INITIATED, (Status.CREATED,)),
    Event.PSP_ACCEPTED: _Route(Status.PG_ACCEPTED, (Status.CREATED, Status.INITIATED)),
    # Always via PG_REJECTED (the table has no other way); from PG_REJECTED itself it
    # finishes a decline whose second step was never recorded.
    Event.PSP_DECLINED: _Route(
        Status.REJECTED, (Status.CREATED, Status.INITIATED, Status.PG_REJECTED)
    ),
    Event.PSP_COMPLETED: _Route(Status.SUCCESS, _OPEN),
    # Money moved, but not the money asked for: it never becomes SUCCESS on its own.
    Event.PSP_MISMATCH: _Route(Status.SUCCESS, _OPEN, hold=Review.AMOUNT_MISMATCH),
    # Only an accepted payment can fail at the PSP, so the path goes through PG_ACCEPTED
    # instead of the shorter INITIATED -> FAILED, which is kept for "never got there".
    Event.PSP_FAILED: _Route(Status.FAILED, _OPEN, via=Status.PG_ACCEPTED),
    # Trusted only while INITIATED: in CREATED the call may simply not have happened yet,
    # and once the PSP said it accepted, a not-found must not override that answer.
    Event.PSP_NOT_FOUND: _Route(Status.FAILED, (Status.INITIATED,)),
    # Unknown is not failed: stay put and let reconciliation ask the PSP again.
    Event.PSP_UNKNOWN: None,
    Event.EXPIRE: _Route(Status.FAILED, _OPEN),
    # An operator's decision on a held transaction; apply() lets them through only then.
    # A failure goes through PG_ACCEPTED: the PSP did take the payment it reported.
    Event.RESOLVE_SUCCESS: _Route(Status.SUCCESS, _OPEN),
    Event.RESOLVE_FAILED: _Route(Status.FAILED, _OPEN, via=Status.PG_ACCEPTED),
}


def apply(status: Status, event: Event, held: bool = False) -> Decision:
    """Decide what ``event`` does to a transaction in ``status``; never raises for valid pairs.

    ``held``: the transaction waits for an operator's decision (an unresolved review). Then
    only an operator's event moves it; until then it is never settled by anything else.
    """
    # Status columns hold plain strings; anything that is not a member should fail loudly.
    status, event = Status(status), Event(event)
    route = ROUTES[event]
    if status in TERMINAL:
        return _ignore_in_terminal(status, event, route)
    if held != (event in OPERATOR_EVENTS):
        if held:
            return _noop(status, f"{event} ignored: {status} is held for an operator")
        return _noop(status, f"{event} ignored: nothing is held for an operator")
    if route is None:
        return _noop(status, f"outcome unknown: stays {status} until the PSP answers")
    if status not in route.starts:
        if status == route.target:
            return _noop(status, f"duplicate event ignored: already {status}")
        # Stale or out-of-order (a re-run initiate task, a late "pending" webhook).
        return _noop(status, f"{event} does not apply in {status}: ignored")
    if route.hold is not None:
        return _noop(status, f"{event} holds {status} for an operator", review=route.hold)

    steps = _walk(status, route)
    commands = route.then
    if route.target in TERMINAL:
        commands += (Command.NOTIFY_MERCHANT,)
    path = " -> ".join([status, *(step.to_status for step in steps)])
    return Decision(
        status=route.target,
        steps=steps,
        commands=commands,
        noop=False,
        conflict=False,
        reason=f"{event} moved {path}",
    )


def _ignore_in_terminal(status: Status, event: Event, route: _Route | None) -> Decision:
    """Terminal statuses never move; the only question is whether a human should look."""
    if route is None or route.target not in TERMINAL or event in OPERATOR_EVENTS:
        # Progress events (a late "pending" webhook) say nothing about the outcome, and an
        # operator's decision on a terminal transaction is recorded beside it, not applied.
        return _noop(status, f"late event ignored: already {status}")
    if route.target == Status.SUCCESS and status != Status.SUCCESS:
        # Money moved after the merchant was told it did not: the status stands, and the
        # money needs a human's decision.
        return _noop(
            status,
            f"{event} contradicts {status}: a late success, needs review",
            conflict=True,
            review=Review.LATE_SUCCESS,
        )
    if route.target == status:
        if route.hold is None:
            return _noop(status, f"duplicate event ignored: already {status}")
        # Settled, and now the PSP names other money than it settled with.
        return _noop(status, f"{event} contradicts the {status} amount: needs review", True)
    if status == Status.SUCCESS:
        # The PSP now says no money moved: the merchant may have been told the wrong
        # outcome, so this needs review rather than silence.
        return _noop(status, f"{event} contradicts {status}: ignored, needs review", True)
    # FAILED vs REJECTED: no money moved either way; the outcome already sent stands.
    return _noop(status, f"late event ignored: already {status}")


def _noop(
    status: Status, reason: str, conflict: bool = False, review: Review | None = None
) -> Decision:
    return Decision(
        status=status,
        steps=(),
        commands=(),
        noop=True,
        conflict=conflict,
        reason=reason,
        review=review,
    )


def _walk(start: Status, route: _Route) -> tuple[Step, ...]:
    """The single steps from ``start`` to the route's target, through ``via`` if set."""
    goals = [route.target] if route.via in (None, start) else [route.via, route.target]
    statuses = [start]
    for goal in goals:
        statuses += _shortest_path(statuses[-1], goal)
    return tuple(Step(a, b) for a, b in itertools.pairwise(statuses))


def _shortest_path(start: Status, goal: Status) -> tuple[Status, ...]:
    """The statuses after ``start`` on a shortest legal path to ``goal`` (breadth-first)."""
    paths: dict[Status, tuple[Status, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            return paths[here]
        # Declaration order, not set order, so the walk is the same in every process.
        for nxt in (s for s in Status if s in TRANSITIONS[here] and s not in paths):
            paths[nxt] = (*paths[here], nxt)
            queue.append(nxt)
    # Only a ROUTES entry that disagrees with TRANSITIONS gets here; the tests walk them all.
    raise ValueError(f"no legal path from {start} to {goal}")
