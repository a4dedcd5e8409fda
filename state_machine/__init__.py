"""The transaction state machine: pure domain, no I/O, nothing imported beyond the stdlib.

``apply(status, event)`` returns a ``Decision``: the new status, every single step taken
(one event row each), and the commands to schedule after commit. Terminal statuses never
move; late and duplicate events are explicit no-ops, flagged when they contradict the
outcome already reached. A transaction held for an operator (``held=True``) moves only by
an operator's event; a success for other money, or after a failure, is held for review.
"""

from state_machine.events import OPERATOR_EVENTS, Command, Event, Review, Source
from state_machine.machine import Decision, Step, apply
from state_machine.statuses import TERMINAL, TRANSITIONS, Status, is_legal_step

__all__ = [
    "OPERATOR_EVENTS",
    "TERMINAL",
    "TRANSITIONS",
    "Command",
    "Decision",
    "Event",
    "Review",
    "Source",
    "Status",
    "Step",
    "apply",
    "is_legal_step",
]
