"""`connxt audit list`, and who the command line is when it acts.

Every administrative command records what it did in the audit trail (storage.audit), in
the same database transaction as the act, naming the person at the terminal.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from datetime import UTC, datetime, timedelta

from commands.exits import fail
from storage import audit
from storage.db import session_scope

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def cli_actor() -> str:
    """``cli <user>@<host>``: the person behind sudo when there is one. Nothing here is
    proof of identity (the environment can say anything); it is what the terminal knew."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    return f"cli {user}@{socket.gethostname()}"


def parse_since(value: str) -> datetime:
    """``24h``, ``7d``, ``30m``, ``90s`` ago, or an ISO 8601 date or time (UTC unless it
    says otherwise); ValueError for anything else."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = int(relative[1]), _UNITS[relative[2]]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_entries(since: str | None, limit: int, as_json: bool) -> int:
    """Print the trail, oldest first: from ``since`` on, or the last ``limit`` entries."""
    try:
        start = parse_since(since) if since else None
    except ValueError:
        return fail("--since takes 24h, 7d, 30m, 90s or an ISO 8601 date or time")
    with session_scope() as session:
        found = audit.entries(session, since=start, limit=limit, oldest_first=start is not None)
    if start is None:
        found.reverse()  # read newest first, printed in the order they happened
    if as_json:
        print(json.dumps([entry.as_dict() for entry in found]))
        return 0
    for entry in found:
        change = ""
        if entry.before is not None or entry.after is not None:
            change = f"  {json.dumps(entry.before)} → {json.dumps(entry.after)}"
        print(
            f"#{entry.id} {entry.at.astimezone(UTC).isoformat(timespec='seconds')} "
            f"{entry.actor}: {entry.action} {entry.subject or ''}{change}"
        )
    if not found:
        print("(no entries)")
    return 0
