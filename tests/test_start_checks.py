"""Start-up refusals that protect the operator: a real network with content held only on this disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.paths import REPO_ROOT

# A key that is not one of anvil's dev keys (those are refused on real networks before this check runs).
STRANGER_KEY = "0x" + "5a" * 32


def _rpc_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_CHAIN__NETWORK": "rpc",
        "STUDIO_CHAIN__RPC_URL": "http://127.0.0.1:9/v2/SECRET-API-KEY",  # never reached: refused first
        "STUDIO_CHAIN__CHAIN_ID": "11155111",
        "STUDIO_CHAIN__PRIVATE_KEY": STRANGER_KEY,
        "STUDIO_APP__PORT": "0",
        **extra,
    }


@pytest.mark.parametrize("command", [["app.py"], ["-m", "evolve", "run"]])
def test_a_real_network_with_only_local_pinning_refuses_to_start(tmp_path, command) -> None:
    args = [sys.executable, *(str(REPO_ROOT / c) if c.endswith(".py") else c for c in command)]
    env = {**_rpc_env(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    for needed in ("STUDIO_IPFS__BACKENDS", "Pinata", "Kubo"):
        assert needed in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "SECRET-API-KEY" not in done.stderr + done.stdout
    assert not (tmp_path / "data" / "studio.db").exists()  # refused before anything was opened


def test_pinning_that_others_can_reach_or_a_dev_chain_is_accepted(monkeypatch) -> None:
    from studio.config import UnreachableContentError, check_content_reachable, load_settings

    monkeypatch.setenv("STUDIO_CHAIN__NETWORK", "rpc")
    monkeypatch.setenv("STUDIO_CHAIN__RPC_URL", "https://rpc.example/v2/key")
    monkeypatch.setenv("STUDIO_CHAIN__CHAIN_ID", "11155111")
    with pytest.raises(UnreachableContentError, match="STUDIO_IPFS__BACKENDS"):
        check_content_reachable(load_settings())
    monkeypatch.setenv("STUDIO_IPFS__BACKENDS", '["local", "kubo"]')
    check_content_reachable(load_settings())
    monkeypatch.setenv("STUDIO_IPFS__BACKENDS", '["pinata"]')
    check_content_reachable(load_settings())
    # A development chain (anvil's or hardhat's id, checked against the node before anything is sent).
    monkeypatch.setenv("STUDIO_IPFS__BACKENDS", '["local"]')
    monkeypatch.setenv("STUDIO_CHAIN__CHAIN_ID", "31337")
    check_content_reachable(load_settings())
    monkeypatch.delenv("STUDIO_CHAIN__NETWORK")
    monkeypatch.setenv("STUDIO_CHAIN__CHAIN_ID", "11155111")
    check_content_reachable(load_settings())  # the embedded chain is a dev chain whatever the id
