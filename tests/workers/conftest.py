"""Task logic in-process: every test's rows are rolled back (tests/support/rollback.py)."""

from tests.support.rollback import rolled_back  # noqa: F401 (a fixture, used by name)
