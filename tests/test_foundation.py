"""Settings and the studio database: what every other part stands on."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import inspect, select

from studio.config import load_settings
from studio.db import Base, open_database
from studio.records import Deployment


def test_defaults_run_everything_locally(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.chain.network == "local"
    assert settings.chain.chain_id == 31337
    assert settings.ipfs.backends == ["local"]
    assert settings.data_dir == Path("studio-data")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'studio-data' / 'studio.db')}"


def test_sources_in_order_of_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "custom.toml"
    toml.write_text('data_dir = "from-toml"\n[chain]\nmax_fee_gwei = 11\nroyalty_bps = 250\n[app]\nport = 9000\n')
    monkeypatch.setenv("STUDIO_CONFIG", str(toml))
    (tmp_path / ".env").write_text("STUDIO_CHAIN__MAX_FEE_GWEI=22\nSTUDIO_APP__PORT=9100\n")
    monkeypatch.setenv("STUDIO_APP__PORT", "9200")

    settings = load_settings()
    assert settings.data_dir == Path("from-toml")  # only the toml sets it
    assert settings.chain.royalty_bps == 250
    assert settings.chain.max_fee_gwei == 22  # .env beats toml
    assert settings.app.port == 9200  # environment beats .env
    assert load_settings(app={"port": 1234}).app.port == 1234  # code beats everything


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0x" + "ab" * 32
    monkeypatch.setenv("STUDIO_CHAIN__PRIVATE_KEY", key)
    monkeypatch.setenv("STUDIO_IPFS__PINATA_JWT", "eyJhbGciOi.secret.jwt")
    settings = load_settings()
    assert settings.chain.private_key.get_secret_value() == key
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert key not in shown
    assert "ab" * 32 not in shown
    assert "secret.jwt" not in shown


@pytest.mark.parametrize(
    ("variable", "value", "secret"),
    [
        ("STUDIO_MODEL__HUB_ENDPOINT", "https://me:hf_SeCrEt@hf-mirror.com", "hf_SeCrEt"),
        ("STUDIO_CHAIN__ROYALTY_BPS", "20000-apikey-SeCrEt", "SeCrEt"),
    ],
)
def test_a_refused_value_is_not_repeated_in_the_error(monkeypatch, variable, value, secret) -> None:
    """The error is printed and logged ("settings refused: ..."); the value may hold a token."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        load_settings()
    assert secret not in str(refused.value)
    assert variable.split("__")[-1].lower() in str(refused.value)  # it still names the field


def test_rpc_network_without_url_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_CHAIN__NETWORK", "rpc")
    with pytest.raises(ValidationError, match="STUDIO_CHAIN__RPC_URL"):
        load_settings()


def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_CHAIN__ROYALTY_BPS", "20000")
    with pytest.raises(ValidationError, match="royalty_bps"):
        load_settings()


def test_database_is_created_and_migrated_by_the_program(settings) -> None:
    database = open_database(settings)
    tables = set(inspect(database.engine).get_table_names())
    assert {"alembic_version", "deployments", "pins", "drafts", "tokens", "token_versions"} <= tables
    database.dispose()
    # Opening again is a no-op upgrade that keeps the data.
    database = open_database(settings)
    with database.session() as session:
        session.add(Deployment(chain_id=31337, address="0x" + "1" * 40))
    database.dispose()
    database = open_database(settings)
    with database.session() as session:
        assert session.scalars(select(Deployment.address)).all() == ["0x" + "1" * 40]
    database.dispose()


def test_migrations_match_the_tables_in_code(db) -> None:
    """A change to studio/records.py without a migration fails here: run `make migration m=...`."""
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_failed_transaction_leaves_no_rows(db) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Deployment(chain_id=1, address="0x" + "2" * 40))
        session.flush()
        raise RuntimeError("step failed after the insert")
    with db.session() as session:
        assert session.scalars(select(Deployment)).all() == []
