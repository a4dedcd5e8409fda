"""Timestamps in the reference's style (one definition, shared with storage's views)."""

from storage.transaction_view import api_time

__all__ = ["api_time"]
