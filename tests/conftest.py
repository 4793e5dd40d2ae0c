"""Shared test set-up. Every test runs offline, against real components started on 127.0.0.1.

Every fixture and test helper lives in tests/fixtures/<thing>.py, one module per thing, registered
below so any test can use its fixtures; a test module imports helpers from there, never from another
test module or conftest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixture modules import one another: have pytest rewrite their asserts whichever is imported first.
pytest.register_assert_rewrite("tests.fixtures")

from tests.fixtures.paths import REPO_ROOT  # noqa: E402

# Before anything imports huggingface_hub or gradio: no hub, no telemetry, no analytics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

pytest_plugins = [
    "tests.fixtures.app",
    "tests.fixtures.chain",
    "tests.fixtures.cid_vectors",
    "tests.fixtures.content",
    "tests.fixtures.credentials",
    "tests.fixtures.evolve",
    "tests.fixtures.generation",
    "tests.fixtures.http",
    "tests.fixtures.hub",
    "tests.fixtures.ray",
    "tests.fixtures.studio",
]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own settings: STUDIO_* variables, .env and studio.toml."""
    for name in list(os.environ):
        if name.startswith("STUDIO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STUDIO_CONFIG", str(tmp_path / "no-studio.toml"))
    # The same kernels on every test machine, whatever its RAM ('auto' turns low below 12 GiB):
    # tests/generation/test_half_storage.py tests the low-memory mode and the 'auto' choice.
    monkeypatch.setenv("STUDIO_MODEL__MEMORY", "speed")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder under test-output/ for artefacts a person may want to look at (screenshots, images)."""
    path = REPO_ROOT / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(tmp_path: Path):
    """Settings for one test: data under tmp_path, the embedded local chain on a free port."""
    from studio.config import load_settings

    return load_settings(data_dir=tmp_path / "data", chain={"local_port": 0})


@pytest.fixture
def db(settings):
    """The studio database (SQLite in the test's data dir), migrated to the newest schema."""
    from studio.db import open_database

    database = open_database(settings)
    yield database
    database.dispose()
