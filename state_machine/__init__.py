"""The transaction state machine: pure domain, no I/O, nothing imported beyond the stdlib.

``apply(status, event)`` returns a ``Decision``: the new status, every single step taken
(one event row each), and the commands to schedule after commit. Terminal statuses never
move; late and duplicate events are explicit no-ops, flagged when they contradict the
outcome already reached.
"""

from state_machine.events import Command, Event, Source
from state_machine.machine import Decision, Step, apply
from state_machine.statuses import TERMINAL, TRANSITIONS, Status, is_legal_step

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Command",
    "Decision",
    "Event",
    "Source",
    "Status",
    "Step",
    "apply",
    "is_legal_step",
]
