"""Celery workers: one module per stage (initiate, callbacks, reconcile, notify)."""
