"""The committed contract artifacts match the Solidity sources (recompiled with the pinned solc-js)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from contracts.artifacts import load_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "solc").exists():
        pytest.fail("node and node_modules/solc are needed to recompile the contracts: run `make test` (npm ci)")
    return node


def test_committed_artifacts_are_up_to_date():
    result = subprocess.run(
        [_node(), "contracts/compile.mjs", "--check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_a_changed_source_is_reported_stale(tmp_path):
    # A copy of the repository's contracts/ beside the same node_modules, with one source edited.
    shutil.copytree(REPO_ROOT / "contracts", tmp_path / "contracts", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "node_modules").symlink_to(REPO_ROOT / "node_modules")
    source = tmp_path / "contracts" / "src" / "LivingNFT.sol"
    # Even a comment counts: the artifact records a hash of the exact sources it was built from.
    source.write_text(source.read_text() + "\n// edited\n")
    result = subprocess.run(
        [_node(), "contracts/compile.mjs", "--check"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "LivingNFT.json" in result.stderr
    assert "make compile" in result.stderr


def test_artifact_loads_with_abi_and_bytecode():
    artifact = load_artifact("LivingNFT")
    names = {entry.get("name") for entry in artifact.abi}
    assert {"mint", "evolve", "evolveBatch", "freeze", "refreshAll", "tokenURI", "MetadataSet"} <= names
    assert artifact.bytecode.startswith("0x60")
    assert artifact.compiler_version.startswith("0.8.37")
