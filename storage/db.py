"""Engines and sessions. Only the edge (a request handler or a task) commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from connxt.settings import get_settings

# A peer that vanished (a host lost, a link cut: no FIN, no RST) is noticed in seconds on
# both ends of a connection, not after TCP's quarter of an hour of retransmissions:
# - here, libpq's keepalives and TCP_USER_TIMEOUT fail a query whose server went silent;
# - on the server, the same settings for this session (``options``) end the backend of a
#   client that went silent, and with it the transaction and the row locks it held, which
#   would otherwise keep a redelivered task of a lost worker host waiting on them.
# (A partition test showed a redelivered initiation waiting 63 s on such a lock.)
LIVENESS = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "options": (
        "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
        " -c tcp_user_timeout=10000"
    ),
}


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    settings = get_settings()
    # A fixed set of connections, kept: no ping round trip per checkout and no connection
    # opened and closed under load. A connection the server dropped fails the statement
    # that uses it; SQLAlchemy then discards the pool's connections, the ingress answers
    # that request 503, and a worker retries the item (workers.item_threads).
    # Looked up on the module at each call: with traces on, OpenTelemetry's SQLAlchemy
    # instrumentation replaces it there (connxt.tracing).
    return sqlalchemy.create_engine(
        url or settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=30,
        # A dead server must fail a request quickly (503), not hang it.
        connect_args=LIVENESS,
        # Statement parameters hold customer data and secrets: never in an error's text,
        # which ends up in logs.
        hide_parameters=True,
    )


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


# Set by ``sessions_from`` for the process (every thread): the factory every unit of work
# uses instead of the engine's.
_injected: sessionmaker[Session] | None = None


def new_session() -> Session:
    return (_injected or _session_factory())()


@contextmanager
def sessions_from(factory: sessionmaker[Session]) -> Iterator[None]:
    """Every ``session_scope`` and ``new_session`` of this process from ``factory`` while the
    block runs: a test binds them to one connection inside a transaction it rolls back
    afterwards (tests/support/rollback.py), so task logic runs in-process against the real
    database and leaves nothing behind."""
    global _injected
    before, _injected = _injected, factory
    try:
        yield
    finally:
        _injected = before


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any exception."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
