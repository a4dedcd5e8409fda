"""Every migration since the last release is additive: the previous release's processes keep
running against the new schema during a rolling update (storage/schema_changes.py).

The SQL is Alembic's own offline rendering of the migrations from the last release's head
to today's, read statement by statement.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from storage.migrate import alembic_config
from storage.schema_changes import LAST_RELEASE

ROOT = Path(__file__).resolve().parents[2]
TAG, RELEASED_HEAD = LAST_RELEASE.tag, LAST_RELEASE.head

# What a running previous release survives: new things, and changes that only widen.
ALLOWED = [
    r"SET lock_timeout = '\d+ms'",
    r"BEGIN",
    r"COMMIT",
    r"CREATE TABLE \w+",
    r"CREATE (UNIQUE )?INDEX CONCURRENTLY \w+ ON \w+",
    r"CREATE (TYPE|SEQUENCE|EXTENSION( IF NOT EXISTS)?) ",
    r"CREATE (OR REPLACE )?(FUNCTION|TRIGGER|VIEW) ",
    r"ALTER TABLE \w+ ADD COLUMN \w+ [^;]*",
    r"ALTER TABLE \w+ ADD CONSTRAINT \w+ [^;]* NOT VALID",
    r"ALTER TABLE \w+ VALIDATE CONSTRAINT \w+",
    r"ALTER TABLE \w+ ALTER COLUMN \w+ (DROP NOT NULL|SET DEFAULT .*|DROP DEFAULT)",
    r"COMMENT ON ",
    r"(GRANT|REVOKE) ",
    r"(INSERT INTO|UPDATE) ",
    r"(UPDATE|INSERT INTO) alembic_version ",
]
# Shapes that ALLOWED would let through but that still break a running release.
REFUSED_WITHIN = [
    (r"ADD COLUMN [^;]*NOT NULL(?![^;]*DEFAULT)", "a NOT NULL column without a default"),
]


# A unique constraint the previous release names, put on a wider index under the same name
# in one statement (storage.schema_changes.swap_unique_constraint): the constraint is never
# missing, and what that release inserts stays unique as it was. Allowed only onto a
# unique index the same migration built concurrently.
SWAP = re.compile(
    r"ALTER TABLE \w+ DROP CONSTRAINT (\w+), ADD CONSTRAINT \1 UNIQUE USING INDEX (\w+)$"
)


def swapped_in_place(revision: str, statement: str, built: set[tuple[str, str]]) -> bool:
    swap = SWAP.match(statement)
    return bool(swap and (revision, swap.group(2)) in built)


def released_migration_sql() -> list[tuple[str, str]]:
    """(revision, statement) for every statement after the released head, in order."""
    buffer = io.StringIO()
    config = alembic_config()
    offline = Config(config.config_file_name, output_buffer=buffer)
    command.upgrade(offline, f"{RELEASED_HEAD}:head", sql=True)
    statements: list[tuple[str, str]] = []
    revision = RELEASED_HEAD
    for raw in buffer.getvalue().split(";\n"):
        marker = re.search(r"-- Running upgrade \S+ -> (\S+)", raw)
        if marker:
            revision = marker.group(1)
        lines = [line for line in raw.splitlines() if line.strip() and not line.startswith("--")]
        statement = " ".join(" ".join(lines).split())
        if statement:
            statements.append((revision, statement))
    return statements


def contract_release(revision: str) -> str | None:
    """A migration may drop what it names only when it says after which release nothing
    reads it any more (``contract_after = "vX.Y.Z"``)."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    return getattr(script.module, "contract_after", None) if script else None


def version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def test_the_released_head_is_a_revision_we_ship():
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_revision(RELEASED_HEAD) is not None


def test_the_released_head_is_the_tags_head():
    """The release's commit (in main's history, tagged or not) ships exactly the migrations
    up to RELEASED_HEAD."""
    tree = f"{LAST_RELEASE.commit}:storage/migrations/versions"
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", tree],
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    released = sorted(name.removesuffix(".py") for name in listing.stdout.split())
    assert released[-1] == RELEASED_HEAD


def test_every_migration_since_the_release_is_additive():
    statements = released_migration_sql()
    assert statements[0][1].startswith("SET lock_timeout"), "DDL must carry a lock timeout"
    # create_index_concurrently drops an INVALID index a failed build left behind first.
    rebuilt = {
        (revision, match.group(2))
        for revision, statement in statements
        if (match := re.match(r"CREATE (UNIQUE )?INDEX CONCURRENTLY (\w+)", statement))
    }
    unique = {
        (revision, match.group(1))
        for revision, statement in statements
        if (match := re.match(r"CREATE UNIQUE INDEX CONCURRENTLY (\w+)", statement))
    }
    problems = []
    for revision, statement in statements:
        allowed = any(re.match(pattern, statement) for pattern in ALLOWED)
        dropped = re.match(r"DROP INDEX CONCURRENTLY IF EXISTS (\w+)$", statement)
        allowed = allowed or bool(dropped and (revision, dropped.group(1)) in rebuilt)
        allowed = allowed or swapped_in_place(revision, statement, unique)
        for pattern, why in REFUSED_WITHIN:
            if re.search(pattern, statement):
                allowed = False
                statement = f"{statement}  ({why})"
        if allowed:
            continue
        after = contract_release(revision)
        if after is not None and version(after) <= version(TAG):
            continue  # a contract step, for what a release already no longer read
        problems.append(f"{revision}: {statement[:160]}")
    assert not problems, "not additive:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE environments RENAME COLUMN webhook_url TO notification_url",
        "DROP INDEX ix_transactions_open",
        "CREATE INDEX ix_x ON transactions (status)",
        "ALTER TABLE transactions ADD COLUMN captured NUMERIC NOT NULL",
        "ALTER TABLE transactions DROP COLUMN amount",
    ],
)
def test_what_the_rule_refuses(statement):
    """The rule itself: each of these would break the previous release mid-rollout."""
    allowed = any(re.match(pattern, statement) for pattern in ALLOWED) and not any(
        re.search(pattern, statement) for pattern, _ in REFUSED_WITHIN
    )
    assert not allowed


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("ALTER TABLE n DROP CONSTRAINT uq_a, ADD CONSTRAINT uq_a UNIQUE USING INDEX ix_new", True),
        # Under another name: the previous release's ON CONFLICT ON CONSTRAINT uq_a fails.
        (
            "ALTER TABLE n DROP CONSTRAINT uq_a, ADD CONSTRAINT uq_b UNIQUE USING INDEX ix_new",
            False,
        ),
        # Onto an index this migration did not build concurrently (or not unique).
        (
            "ALTER TABLE n DROP CONSTRAINT uq_a, ADD CONSTRAINT uq_a UNIQUE USING INDEX ix_old",
            False,
        ),
        ("ALTER TABLE n DROP CONSTRAINT uq_a", False),
    ],
)
def test_a_unique_constraint_is_widened_only_in_place(statement, allowed):
    assert swapped_in_place("r", statement, {("r", "ix_new")}) is allowed
