"""The SQL statements this process sends, watched for a block (how many queries a path
costs: a cache that works sends none)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from storage.db import get_engine


@contextmanager
def statements_sent(on_statement: Callable[[str], None]) -> Iterator[None]:
    """Each statement the engine sends during the block, given to ``on_statement``."""
    engine = get_engine()

    def seen(_conn, _cursor, statement, *_args) -> None:
        on_statement(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", seen)
