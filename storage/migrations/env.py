"""Alembic environment: the URL comes from settings unless the caller set one.

Schema changes must survive a rolling update, where the previous release's processes keep
running against the new schema (README, "Upgrading"; ``storage/schema_changes.py``):

- each migration runs in a transaction of its own, so one that builds an index
  ``CONCURRENTLY`` can step outside it (``autocommit_block``) without taking the others along;
- every statement waits at most ``CONNXT_MIGRATION_LOCK_TIMEOUT`` for its locks: DDL queued
  behind a long transaction would otherwise queue every query behind itself, and the
  fleet's requests with them. A migration that times out fails loudly and is run again.
"""

from alembic import context
from sqlalchemy import create_engine

from connxt.settings import get_settings
from storage.models import Base

config = context.config
settings = get_settings()
lock_timeout = f"SET lock_timeout = '{int(settings.migration_lock_timeout_ms)}ms'"


def run_offline() -> None:
    """``alembic upgrade --sql``: the statements as text (what the additive-migration test
    reads), with the same lock timeout and transactions as a real run."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or settings.database_url,
        target_metadata=Base.metadata,
        literal_binds=True,
        transaction_per_migration=True,
    )
    context.execute(lock_timeout)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or settings.database_url)
    with engine.connect() as connection:
        connection.exec_driver_sql(lock_timeout)
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
