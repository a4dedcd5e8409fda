"""Celery workers: the app and its task base, the lanes, and a module per kind of work
(initiation, webhooks, inquiries, expiry, notifications, the sweeps), with the outbox relay."""
