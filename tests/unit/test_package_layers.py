"""The packages point one way (docs/ARCHITECTURE.md §7.1): each imports only those below
it, imports inside functions included, so there is no cycle to hide.

    connxt, state_machine, sandbox   (ground: nothing else of ours)
    connectors                        (connxt)
    storage                           (connectors, state_machine, connxt)
    workers                           (storage and below)
    api_gateway                       (storage and below: never the workers)
    console                           (workers and below)
    commands                          (anything: nothing imports it)

The sandbox plays the PSPs and the merchants, so it shares no code with the connectors it
checks: a wrong signature or amount format would otherwise agree with itself.

And queries live in storage/ (docs/ARCHITECTURE.md §7.1): outside it nothing imports
SQLAlchemy or psycopg but their exception modules (or, for annotations, under
``if TYPE_CHECKING:``), no string holds a SQL statement, and no session is asked for rows
(``session.get``, ``.execute``, ``.add``...): routes, tasks and commands call a storage
function instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_STORAGE_AND_BELOW = {"connxt", "state_machine", "connectors", "storage"}
ALLOWED: dict[str, set[str]] = {
    "connxt": set(),
    "state_machine": set(),
    "sandbox": set(),
    "connectors": {"connxt"},
    "storage": {"connxt", "state_machine", "connectors"},
    "workers": _STORAGE_AND_BELOW,
    "api_gateway": _STORAGE_AND_BELOW,
    "console": _STORAGE_AND_BELOW | {"workers"},
    "commands": set(),  # filled below: everything
}
ALLOWED["commands"] = set(ALLOWED) - {"commands"}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages one module imports, wherever in the module it does."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(ALLOWED)


def package_imports(package: str) -> dict[str, set[str]]:
    """Each other package ``package`` imports, with the modules that do."""
    edges: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for other in imported_packages(path) - {package}:
            edges.setdefault(other, set()).add(str(path.relative_to(ROOT)))
    return edges


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_packages_below_it(package):
    edges = package_imports(package)
    assert edges or package in ("connxt", "state_machine", "sandbox"), "nothing scanned?"
    wrong = {
        other: sorted(files) for other, files in edges.items() if other not in ALLOWED[package]
    }
    assert wrong == {}, f"{package} imports packages above it or beside it: {wrong}"


def test_the_layers_have_no_cycle():
    # A check of the table itself: walking down from any package never comes back to it.
    def below(package: str, seen: tuple[str, ...]) -> None:
        for other in ALLOWED[package]:
            assert other not in seen, " → ".join((*seen, other))
            below(other, (*seen, other))

    for package in ALLOWED:
        below(package, (package,))


def test_the_scan_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workers.app import celery_app\n    import storage.db\n")
    assert imported_packages(module) == {"workers", "storage"}


# --- queries live in storage/ ------------------------------------------------------------

OUTSIDE_STORAGE = sorted(set(ALLOWED) - {"storage"})
DATABASE_LIBRARIES = {"sqlalchemy", "psycopg", "psycopg_pool"}
# What a caller may catch: the libraries' exceptions, nothing that reaches the database.
EXCEPTION_MODULES = {"sqlalchemy.exc", "psycopg.errors", "psycopg_pool.errors"}
# A statement as PostgreSQL reads it, from the start of a string (SQL comments aside):
# keywords in capitals, as every statement of ours is written, so prose that begins with
# "Select" or "Update" is not one.
SQL_STATEMENT = re.compile(
    r"""\A\s*(?:--[^\n]*\n\s*)*(?:
        SELECT\s+\S | INSERT\s+INTO\s | UPDATE\s+[\w."]+\s+(?:\w+\s+)?SET\s | DELETE\s+FROM\s
      | WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*\( | (?:UN)?LISTEN\s+\S | NOTIFY\s+\S
    )""",
    re.VERBOSE,
)
# What a SQLAlchemy session is asked for rows or writes with.
SESSION_CALLS = {
    "add",
    "add_all",
    "begin_nested",
    "connection",
    "delete",
    "execute",
    "flush",
    "get",
    "merge",
    "query",
    "refresh",
    "scalar",
    "scalars",
}
SESSION_NAMES = {"session", "db"}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                guarded.update(id(child) for child in ast.walk(inner))
    return guarded


def _database_import(node: ast.Import | ast.ImportFrom) -> str | None:
    """The database module an import reaches, unless it is only their exceptions."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in DATABASE_LIBRARIES:
                return alias.name  # even `import sqlalchemy.exc` binds all of sqlalchemy
        return None
    module = node.module or ""
    if node.level or module.split(".")[0] not in DATABASE_LIBRARIES:
        return None
    if module in EXCEPTION_MODULES:
        return None
    if all(f"{module}.{alias.name}" in EXCEPTION_MODULES for alias in node.names):
        return None  # `from psycopg import errors`
    return module


def _string_value(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # an f-string: each placeholder read as a name
        return "".join(
            part.value if isinstance(part, ast.Constant) else "x" for part in node.values
        )
    return None


def _session_call(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in SESSION_NAMES
        and node.func.attr in SESSION_CALLS
    ):
        return node.func.attr
    return None


def database_access(path: Path) -> set[str]:
    """What one module does that only storage/ may: ``import <module>``, ``SQL: <start>``
    and ``session.<call>``."""
    tree = ast.parse(path.read_text(), str(path))
    guarded = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in guarded:
            module = _database_import(node)
            if module:
                found.add(f"import {module}")
        text = _string_value(node)
        if text is not None and SQL_STATEMENT.search(text):
            found.add(f"SQL: {text.strip()[:40]}")
        call = _session_call(node)
        if call:
            found.add(f"session.{call}")
    return found


@pytest.mark.parametrize("package", OUTSIDE_STORAGE)
def test_queries_live_in_storage(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = str(path.relative_to(ROOT))
        found = database_access(path)
        if found:
            wrong[name] = sorted(found)
    assert wrong == {}, f"{package} reaches the database itself, not through storage/: {wrong}"


def test_the_scan_sees_the_queries_storage_holds():
    # The scan itself, on modules that must show what it looks for.
    assert "import sqlalchemy.orm" in database_access(ROOT / "storage/tenants.py")
    claim = database_access(ROOT / "storage/inquiry_schedule.py")
    assert any(found.startswith("SQL: WITH due AS") for found in claim)
    assert "SQL: LISTEN x" in database_access(ROOT / "storage/outbox.py")
    assert "SQL: SELECT 1" in database_access(ROOT / "storage/aio.py")
    assert "session.get" in database_access(ROOT / "storage/decisions.py")


def test_the_scan_tells_a_query_from_what_only_names_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from psycopg import errors\n"
        "from psycopg_pool.errors import PoolTimeout\n"
        "from sqlalchemy.exc import IntegrityError\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy.orm import Session\n"
        '"""Select the rows, update the set. LISTEN: a docstring, not a statement."""\n'
        "def f(session, redis):\n"
        "    redis.get('k')\n"
        "    return session.kind\n"
    )
    assert database_access(module) == set()
    module.write_text(
        "import psycopg\n"
        "from sqlalchemy import select\n"
        "def f(session, conn, channel):\n"
        "    conn.execute(f'LISTEN {channel}')\n"
        "    conn.execute('\\n  -- the due ones\\n  UPDATE transactions t SET a = 1')\n"
        "    return session.get(object, 1)\n"
    )
    assert database_access(module) == {
        "import psycopg",
        "import sqlalchemy",
        "SQL: LISTEN x",
        "SQL: -- the due ones\n  UPDATE transactions t ",  # the first 40 characters
        "session.get",
    }
