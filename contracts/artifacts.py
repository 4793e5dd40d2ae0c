"""Load the compiled contract artifacts committed under contracts/artifacts/ (written by compile.mjs).

Python never needs node at run time: the ABI and bytecode come from these JSON files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from contracts.errors import ArtifactError

ARTIFACTS_DIR = Path(__file__).with_name("artifacts")


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract: what deploys it and what talks to it."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    sources_hash: str


@cache
def load_artifact(name: str = "LivingNFT") -> ContractArtifact:
    """The committed artifact `contracts/artifacts/<name>.json`."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(
            f"no compiled artifact for contract {name!r} at {path}: run `make compile` (needs node) and commit it."
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read contract artifact {path}: {exc}; run `make compile`.") from None
    return ContractArtifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        sources_hash=data["sourcesHash"],
    )
