"""`python -m studio collection ...` as a user runs it: a real process, real anvil, SQLite, the tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from studio.records import Draft, Token
from studio.services import collections
from studio.services.studio import Studio
from tests.fixtures.paths import REPO_ROOT

RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1

SPEC = """\
name = "lanterns"
description = "Paper lanterns"
editions = 5
base_seed = 40
prompt = "a {colour} lantern"
width = 64
height = 64

[traits.colour.values]
red = 3
blue = 2
gold = 1
"""


def cli_env(settings) -> dict[str, str]:
    chain, model = settings.chain, settings.model
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "STUDIO_DATA_DIR": str(settings.data_dir),
        "STUDIO_CHAIN__NETWORK": chain.network,
        "STUDIO_CHAIN__RPC_URL": chain.rpc_url,
        "STUDIO_CHAIN__CHAIN_ID": str(chain.chain_id),
        "STUDIO_CHAIN__PRIVATE_KEY": chain.private_key.get_secret_value(),
        "STUDIO_MODEL__MODEL_ID": model.model_id,
        "STUDIO_MODEL__DEVICE": model.device,
        "STUDIO_MODEL__DTYPE": model.dtype,
        "STUDIO_MODEL__TINY_AUTOENCODER_ID": model.tiny_autoencoder_id,
        "STUDIO_MODEL__MAX_SIDE": str(model.max_side),
        "OMP_NUM_THREADS": "1",
    }


def run_cli(settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "studio", "collection", *args],
        env={**cli_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_generate_stop_resume_and_mint_from_a_shell(studio_settings, tmp_path: Path) -> None:
    spec = tmp_path / "lanterns.toml"
    spec.write_text(SPEC.replace("editions = 5", "editions = 0"), encoding="utf-8")
    refused = run_cli(studio_settings, "generate", str(spec))
    assert refused.returncode == 2, refused.stderr
    assert f"{spec}:3: editions: Input should be greater than or equal to 1" in refused.stderr
    assert "Traceback" not in refused.stderr

    spec.write_text(SPEC, encoding="utf-8")
    # Ctrl-C after the first edition: the run stops after the image it is on, keeping what it made.
    child = subprocess.Popen(
        [sys.executable, "-m", "studio", "collection", "generate", str(spec)],
        env=cli_env(studio_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in child.stdout:
        lines.append(line)
        if line.startswith("1/5"):
            child.send_signal(signal.SIGINT)
            break
    _out, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    assert "stopped with" in err
    assert "run the same command to resume" in err
    assert lines[0] == "0/5 starting\n"
    assert lines[1].startswith("1/5 edition 1 ETA ")
    with Studio.open(studio_settings) as studio:
        made_before = collections.get_collection(studio, "lanterns").generated
    assert 1 <= made_before < 5

    resumed = run_cli(studio_settings, "generate", str(spec))
    assert resumed.returncode == 0, resumed.stderr
    assert f"lanterns: 5/5 editions made ({5 - made_before} in this run)" in resumed.stdout
    assert resumed.stdout.splitlines()[-3].startswith("5/5 edition 5 ETA 0:00")
    with Studio.open(studio_settings) as studio, studio.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Draft)) == 5  # none made twice

    bad_address = run_cli(studio_settings, "mint", "lanterns", "--to", "0x1234")
    assert bad_address.returncode == 2
    assert "is not an Ethereum address" in bad_address.stderr
    unknown = run_cli(studio_settings, "mint", "no-such-collection")
    assert unknown.returncode == 2
    assert "No collection named 'no-such-collection'" in unknown.stderr

    # Killed between the chain confirming the drop's batch mint and recording it: the next run records the
    # tokens (the studio's start-up reconcile), adopts them as the editions', and mints nothing twice.
    crashed = run_cli(
        studio_settings, "mint", "lanterns", "--to", RECIPIENT, STUDIO_CRASH_AT="batch_mint:after_confirmation"
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    minted = run_cli(studio_settings, "mint", "lanterns", "--to", RECIPIENT)
    assert minted.returncode == 0, minted.stderr
    assert "lanterns: 5 tokens minted (0 in this run)" in minted.stdout
    assert "collection metadata: ipfs://bafkrei" in minted.stdout
    with Studio.open(studio_settings) as studio:
        studio.start_chain()
        assert studio.chain.client.total_supply() == 5
        with studio.db.session() as session:
            assert session.scalar(select(func.count()).select_from(Token)) == 5
        view = collections.get_collection(studio, "lanterns")
        assert sorted(e.token_id for e in view.editions) == [1, 2, 3, 4, 5]

    shown = run_cli(studio_settings, "show", "lanterns")
    assert shown.returncode == 0, shown.stderr
    assert "lanterns: 5/5 generated, 5 kept, 5 minted" in shown.stdout
    assert "rarity (kept editions):" in shown.stdout
