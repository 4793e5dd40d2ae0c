"""The studio database on PostgreSQL: the same migrations and services, only the URL changed.

Runs a throwaway PostgreSQL cluster (Debian's postgresql package: initdb + pg_ctl, listening on a unix
socket in a temporary folder only).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from studio.db import Base, open_database
from studio.services import drafts, minting, tokens
from studio.services.studio import Studio


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [shutil.which("pg_ctl")]
    return Path(found[-1]).parent if found[-1] else None


def as_postgres_user() -> list[str]:
    """initdb refuses to run as root: run the server as the `postgres` system user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    root = tmp_path_factory.mktemp("postgres")
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
        for parent in root.parents:  # the server must reach its folder
            if parent == Path(tmp_path_factory.getbasetemp()).parent.parent:
                break
            parent.chmod(parent.stat().st_mode | 0o711)

    def run(tool: str, *args: str) -> None:
        # cwd: the server user must be able to enter the working directory (the test's own is root-only).
        done = subprocess.run(
            [*as_postgres_user(), str(bin_dir / tool), *args], cwd=root, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{tool} failed: {done.stderr or done.stdout}"

    run("initdb", "-D", str(data), "-U", "studio", "--auth=trust", "-E", "UTF8")
    options = f"-k {sockets} -c listen_addresses='' -p 55432"
    run("pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start")
    try:
        run("createdb", "-h", str(sockets), "-p", "55432", "-U", "studio", "studio")
        yield f"postgresql+psycopg://studio@/studio?host={sockets}&port=55432"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "fast", "stop")


def test_migrations_create_the_same_schema_on_postgres(settings, postgres_url: str) -> None:
    database = open_database(settings.model_copy(update={"database_url": postgres_url}))
    try:
        assert {"deployments", "drafts", "tokens", "token_versions", "mint_intents"} <= set(
            inspect(database.engine).get_table_names()
        )
        with database.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        database.dispose()


def test_draft_mint_and_timeline_on_postgres(studio_settings, postgres_url: str) -> None:
    settings = studio_settings.model_copy(update={"database_url": postgres_url})
    with Studio.open(settings) as studio:
        studio.start_chain()
        draft = drafts.create_draft(studio, prompt="granite coast", seed=2**32 - 1, width=64, height=64).draft
        outcome = minting.mint_draft(
            studio, draft.id, name="Coast", recipient="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        )
        (view,) = tokens.timeline(studio, outcome.token_id)
        assert view.metadata_cid == outcome.published.metadata_cid
        assert tokens.get_token(studio, outcome.token_id).seed == 2**32 - 1


def test_two_processes_starting_a_cycle_at_once_get_one_cycle_on_postgres(settings, postgres_url: str) -> None:
    from tests.fixtures.races import assert_one_started_one_busy, begin_two_cycles_at_once

    database = open_database(settings.model_copy(update={"database_url": postgres_url}))
    database.dispose()
    assert_one_started_one_busy(begin_two_cycles_at_once(postgres_url, collection="race"))


def test_one_scheduler_lease_holder_at_a_time_on_postgres(settings, postgres_url: str) -> None:
    from datetime import timedelta

    from evolve.scheduler import SchedulerLease

    database = open_database(settings.model_copy(update={"database_url": postgres_url}))
    try:
        first, second = SchedulerLease(database, timedelta(seconds=60)), SchedulerLease(database, timedelta(seconds=60))
        second.holder = "another-host:1:1"
        assert first.try_acquire() is None
        assert first.try_acquire() is None  # renewed
        assert second.try_acquire() == first.holder
        first.release()
        assert second.try_acquire() is None
        assert first.try_acquire() == "another-host:1:1"
    finally:
        database.dispose()
