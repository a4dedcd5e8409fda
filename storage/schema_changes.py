"""Schema changes a rolling update survives: the rules every migration after a release follows.

During a rollout the previous release's processes run against the new schema, so a
migration only *expands* (README, "Upgrading"):

- new tables, new nullable columns (or with a default), new constraints ``NOT VALID`` then
  validated, backfills in batches;
- a rename is a new column, a backfill and code that reads both; the old column is dropped
  (*contracted*) only in a later release, when no running code reads it any more;
- indexes are built and dropped ``CONCURRENTLY``, outside the migration's transaction
  (``env.py`` gives each migration a transaction of its own);
- a unique constraint the previous release names is widened in place: a new unique index
  built concurrently, then put under the constraint's name in one statement
  (``swap_unique_constraint``);
- every statement waits at most ``CONNXT_MIGRATION_LOCK_TIMEOUT_MS`` for its locks (env.py).

``tests/unit/test_migrations_additive.py`` reads the SQL of every migration since the last
release and refuses what a running previous release would not survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op


class Release(NamedTuple):
    tag: str  # git tag v*
    commit: str  # the tag's commit, for a clone made without tags
    head: str  # its head revision: what the previous release's processes expect


# The last tagged release. Moved forward when a release is tagged.
LAST_RELEASE = Release("v0.1.0", "96d31cd86735efca0d710a6b4aa993ed8862b52a", "0007_no_open_index")


def create_index_concurrently(
    name: str,
    table: str,
    columns: Sequence[str],
    *,
    unique: bool = False,
    where: str | None = None,
    include: Sequence[str] = (),
    nulls_not_distinct: bool = False,
) -> None:
    """Build an index without blocking writes. An interrupted build leaves an INVALID index
    behind, so one of that name is dropped first: running the migration again finishes it."""
    dialect_options: dict[str, Any] = (
        {"postgresql_nulls_not_distinct": True} if nulls_not_distinct else {}
    )
    if include:
        dialect_options["postgresql_include"] = list(include)
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.create_index(
            name,
            table,
            list(columns),
            unique=unique,
            postgresql_concurrently=True,
            postgresql_where=sa.text(where) if where else None,
            **dialect_options,
        )


def swap_unique_constraint(table: str, constraint: str, index: str) -> None:
    """Put the unique constraint ``constraint`` on ``index`` (a unique index built with
    create_index_concurrently), keeping its name, in one statement: code that names the
    constraint (``ON CONFLICT ON CONSTRAINT``) never finds it missing, and the statement
    takes its lock for a moment only (the index is built already). The way to widen a
    uniqueness the previous release relies on, since a constraint cannot be renamed away
    while that release runs."""
    op.execute(
        f"ALTER TABLE {table} DROP CONSTRAINT {constraint}, "
        f"ADD CONSTRAINT {constraint} UNIQUE USING INDEX {index}"
    )


def drop_index_concurrently(name: str) -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
