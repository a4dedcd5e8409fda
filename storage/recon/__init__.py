"""Settlement reconciliation's storage: every query of `connxt recon` (docs/ARCHITECTURE.md).

- ``vocabulary``: the classes a line or a transaction ends in, run statuses and triggers;
- ``runs``: runs of an account and day (created, started, failed, listed);
- ``matching`` (with ``match_sql``, the statement): one run's report stored in bulk and
  matched in one SQL pass; ``results``: the run's summary, the day's result replaced;
- ``differences``: what runs found, operators' resolutions, the open ones for the alert;
- ``views``: the public shape of a run and of a difference;
- ``schedule``: which days of which account are due.
"""
