"""The ingress's asynchronous PostgreSQL connections (psycopg's async pool).

A fixed number of connections is opened when the ingress starts and kept: nothing is
checked per checkout (no ping round trip) and nothing is closed under load, so backends are
never born and killed per request. A connection that died (the server restarted) is found
out by the statement that uses it; the pool drops it and opens a replacement in the
background, and the caller decides whether its work may be tried again.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from connxt.settings import Settings


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq spells it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


async def _configure(conn: AsyncConnection) -> None:
    conn.row_factory = dict_row  # type: ignore[assignment]


def ingress_pool(settings: Settings) -> AsyncConnectionPool:
    """Opened by the ingress's lifespan (``await pool.open()``), closed when it stops."""
    size = settings.ingress_db_connections
    return AsyncConnectionPool(
        libpq_url(settings.database_url),
        min_size=size,
        max_size=size,
        # Autocommit: each batch is one statement, and one statement is its own transaction.
        kwargs={"autocommit": True, "connect_timeout": 3},
        configure=_configure,
        open=False,
        # A request waits this long for a connection before it is refused with a 503.
        timeout=2.0,
        name="ingress",
    )
