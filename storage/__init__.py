"""PostgreSQL: models, sessions, repositories, migrations, outbox and inbox."""
