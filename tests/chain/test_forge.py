"""The contract's own Foundry suite (contracts/test/: unit, fuzz, invariant and differential tests) run by
forge from npm (`@foundry-rs/forge`, pinned), so that `make test` fails when any of it fails.

forge compiles with solc-js through contracts/test/solc (it cannot download a native solc here) and
reads its settings from foundry.toml: 256 runs per fuzz property and per invariant, a fixed seed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contracts.localchain import foundry_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
SOLC_SHIM = REPO_ROOT / "contracts" / "test" / "solc"
MIN_RUNS = 256


def test_foundry_suite_passes_with_256_runs_per_property():
    forge = foundry_binary("forge")  # the platform's ELF, not the package's node wrapper
    if not forge.exists():
        pytest.fail(f"forge not found at {forge}: run `make test` (it runs `npm ci`) or set STUDIO_FORGE_BIN")
    if shutil.which("node") is None:
        pytest.fail("node is needed: forge compiles through solc-js (contracts/test/solc)")
    result = subprocess.run(
        # --use with an absolute path: forge resolves foundry.toml's relative `solc` against its cwd.
        [str(forge), "test", "--offline", "--root", str(REPO_ROOT), "--use", str(SOLC_SHIM), "--color", "never"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"forge test failed (exit {result.returncode}):\n{output[-30000:]}"

    passed = re.findall(r"^\[PASS\] (\w+)\(", output, flags=re.MULTILINE)
    runs = {name: int(n) for name, n in re.findall(r"^\[PASS\] (\w+)\([^)]*\) \(runs: (\d+)", output, re.MULTILINE)}
    assert len(passed) >= 45, f"only {len(passed)} forge tests ran:\n{output[-5000:]}"
    fuzzed = [name for name in passed if name.startswith(("testFuzz", "invariant"))]
    assert fuzzed, "no fuzz or invariant property ran"
    for name in fuzzed:
        assert runs.get(name, 0) >= MIN_RUNS, f"{name} ran {runs.get(name)} times, fewer than {MIN_RUNS}"
