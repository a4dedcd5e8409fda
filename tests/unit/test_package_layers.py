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
"""

from __future__ import annotations

import ast
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
