"""Alembic environment: run by studio.db.migrate() with the studio's engine, or by the alembic CLI."""

from alembic import context
from sqlalchemy import create_engine

import studio.records  # noqa: F401  (registers every table on Base.metadata)
from studio.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode recreates the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
