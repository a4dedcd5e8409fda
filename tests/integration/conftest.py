"""Fixtures the reconciliation tests share (tests.support.recon): an in-process sandbox,
the books of a PSP account in it, and the settlement window."""

from tests.support.recon import books, sandbox, window  # noqa: F401 (fixtures, by name)
