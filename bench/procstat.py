"""CPU seconds of process trees, read from /proc (Linux only, no dependency).

A tree's CPU is the sum over its live processes of utime + stime + cutime + cstime. A child
that exits is reaped by its parent inside the tree, and its whole time (with that of its own
reaped children) moves into the parent's cutime/cstime, so the sum counts every CPU second
once, whether the process that spent it is still alive or not. For PostgreSQL this is the
postmaster's cutime + cstime (backends that exited: connection churn shows there) plus every
live backend's own time.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            kids += [int(p) for p in text.split()]
    except OSError:
        pass  # gone meanwhile
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    seen, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo += _children(current)
    return seen


def _cpu(pid: int) -> float:
    """Own plus reaped children's CPU seconds of one process; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICK


def tree_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    return sum(_cpu(p) for p in tree(pid))


class CpuMeter:
    """CPU seconds spent by named process trees between ``start()`` and ``stop()``."""

    def __init__(self, roots: dict[str, list[int]]):
        self.roots = roots  # role → root pids (e.g. "worker" → one pid per worker group)
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {role: sum(tree_cpu(p) for p in pids) for role, pids in self.roots.items()}

    def start(self) -> CpuMeter:
        self._before = self._read()
        return self

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.spent = {
            role: round(max(0.0, after[role] - self._before.get(role, 0.0)), 2) for role in after
        }
        return self.spent
