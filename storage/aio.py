"""The ingress's asynchronous PostgreSQL connections (psycopg's async pool).

A fixed number of connections is opened when the ingress starts and kept: nothing is
checked per checkout (no ping round trip) and nothing is closed under load, so backends are
never born and killed per request. A connection that died (the server restarted) is found
out by the statement that uses it; the pool drops it and opens a replacement in the
background, and the caller decides whether its work may be tried again.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import structlog
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from connxt.settings import Settings
from storage.db import LIVENESS

log = structlog.get_logger()

# The ingress's connections answer rows as dicts (``_configure``).
IngressConnection: TypeAlias = AsyncConnection[DictRow]
IngressPool: TypeAlias = AsyncConnectionPool[IngressConnection]


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq spells it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


async def _configure(conn: AsyncConnection[Any]) -> None:
    conn.row_factory = dict_row


def ingress_pool(settings: Settings) -> IngressPool:
    """Opened by the ingress's lifespan (``await pool.open()``), closed when it stops."""
    size = settings.ingress_db_connections
    return AsyncConnectionPool(
        libpq_url(settings.database_url),
        min_size=size,
        max_size=size,
        # Autocommit: each batch is one statement, and one statement is its own transaction.
        kwargs={"autocommit": True, **LIVENESS},
        configure=_configure,
        open=False,
        # A request waits this long for a connection before it is refused with a 503.
        timeout=2.0,
        name="ingress",
    )


async def open_ingress_pool(settings: Settings) -> IngressPool:
    """The ingress's pool, open. Waits a few seconds for it to fill; when PostgreSQL is
    away the ingress still starts (answering 503 for writes, /readyz not ready): psycopg
    closes a pool that did not fill in time, so a fresh one is opened that fills in the
    background as soon as PostgreSQL answers."""
    pool = ingress_pool(settings)
    try:
        await pool.open(wait=True, timeout=5)
    except PoolTimeout:
        log.warning("ingress.database_not_ready")
        pool = ingress_pool(settings)
        await pool.open(wait=False)
    return pool


async def ping(pool: IngressPool) -> None:
    """One round trip on one of the pool's connections; raises when it fails."""
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
