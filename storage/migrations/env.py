"""Alembic environment: the URL comes from settings unless the caller set one."""

from alembic import context
from sqlalchemy import create_engine

from connxt.settings import get_settings
from storage.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
