"""The studio's own database: engine, sessions and schema migrations (SQLAlchemy 2 + Alembic).

SQLite in the data directory by default; any SQLAlchemy URL works (PostgreSQL by changing the URL
alone). The schema is created and upgraded by the program itself on open: `open_database()` runs
the Alembic migrations in `studio/migrations/` up to the newest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from studio.config import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    """Declarative base of every studio table (see studio/records.py)."""


def create_db_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout so that the web app
    and the evolution daemon can share one file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config interpolates '%': URL-encoded passwords and socket paths need it doubled.
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration (a no-op when it already is)."""
    command.upgrade(alembic_config(engine), "head")


class Database:
    """An engine plus a session factory. Use `with db.session() as s:` for one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back on any exception,
        so a failed step never leaves half-written rows."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings, *, run_migrations: bool = True) -> Database:
    """Open (and create or upgrade) the studio database named by `settings`."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(url)
    if run_migrations:
        migrate(engine)
    return Database(engine)
