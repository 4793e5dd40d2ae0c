"""`make run` (python app.py): chain with the contract, the studio, the gallery and the gateway from one
process, and Ctrl-C stops it all cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.fixtures.paths import REPO_ROOT


def _run_once(data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_CHAIN__LOCAL_PORT": "0",
        "STUDIO_APP__PORT": "0",  # a free port: 7860 may be taken on the machine running the tests
    }
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "app.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=data_dir.parent,
    )
    printed: dict[str, str] = {}
    try:
        for line in process.stdout:
            key, _, value = line.partition(": ")
            printed[key] = value.strip()
            if line.startswith("Running"):
                break
        # While it runs, the web app answers: the collector gallery and the studio's own page.
        studio_url = printed["Studio"]
        assert httpx.get(printed["Collector gallery"], timeout=30).status_code == 200
        assert httpx.get(studio_url, timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return printed


def test_run_starts_chain_with_contract_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "studio-data"
    first = _run_once(data_dir)
    assert first["Chain (embedded anvil)"].startswith("http://127.0.0.1:")
    assert first["LivingNFT contract"].startswith("0x")
    assert first["Studio"].startswith("http://127.0.0.1:")
    assert first["Evolution scheduler"].startswith("rules in")
    assert (data_dir / "chain" / "state.json").exists()
    assert not (data_dir / "chain" / "anvil.pid").exists()  # anvil stopped with the studio

    second = _run_once(data_dir)
    assert second["LivingNFT contract"] == first["LivingNFT contract"]  # reused after restart
