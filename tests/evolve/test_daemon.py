"""The daemon as an operator runs it: real `python -m evolve` processes, killed with SIGKILL at
several points of a cycle and started again; the CLI commands and their status output."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from evolve.journal import OPEN_STEPS, CycleStatus
from studio.records import EvolveCycle, EvolveStep, Token
from tests.fixtures.evolve import mint_living, weather_rules
from tests.fixtures.processes import evolve_cli, process_env, start_daemon, wait_until

pytestmark = pytest.mark.slow


def settled(studio, after_cycle: int) -> bool:
    """A cycle newer than `after_cycle` finished and nothing is left open in the journal."""
    with studio.db.session() as session:
        newest = session.scalar(
            select(EvolveCycle).where(EvolveCycle.id > after_cycle).order_by(EvolveCycle.id.desc()).limit(1)
        )
        open_steps = session.scalar(select(EvolveStep.id).where(EvolveStep.step.in_(OPEN_STEPS)))
        return newest is not None and newest.status in (CycleStatus.DONE, CycleStatus.PARTIAL) and open_steps is None


def last_cycle_id(studio) -> int:
    with studio.db.session() as session:
        return session.scalar(select(EvolveCycle.id).order_by(EvolveCycle.id.desc()).limit(1)) or 0


def check_story(studio, tokens: list[int], expected_version: int) -> None:
    """Every token: chain history == recorded versions, each version once, all content pinned."""
    client = studio.chain.client
    with studio.db.session() as session:
        for token_id in tokens:
            token = session.scalar(select(Token).where(Token.token_id == token_id))
            history = client.history(token_id)
            assert [h.version for h in history] == list(range(expected_version + 1)), f"token {token_id}"
            assert [(v.version, v.metadata_cid) for v in token.versions] == [
                (h.version, h.metadata_cid) for h in history
            ]
            assert token.current_version == expected_version
            assert client.token_uri(token_id) == f"ipfs://{token.current_metadata_cid}"
            for version in token.versions:
                assert studio.store.has(version.metadata_cid)
                assert studio.store.has(version.image_cid)
                if version.version:
                    assert studio.store.has(version.feed_snapshot_cid)
                    metadata = json.loads(studio.store.cat(version.metadata_cid))
                    assert metadata["provenance"]["previous"] == f"ipfs://{version.previous_metadata_cid}"


def test_sigkill_at_any_point_then_restart_rolls_forward(
    open_studio, evolve_settings, weather_api, tmp_path: Path
) -> None:
    studio = open_studio()
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    tokens = mint_living(studio, 3)
    log_path = tmp_path / "daemon.log"
    temperatures = [-5.0, 12.0, 30.0, -5.0, 12.0]
    points = ["after_snapshot", "after_pin", "before_send", "after_send", "after_record"]
    for index, (point, temperature) in enumerate(zip(points, temperatures, strict=True)):
        weather_api.value = temperature
        before = last_cycle_id(studio)
        crash_env = process_env(evolve_settings, tmp_path, STUDIO_CRASH_AT=f"evolve:{point}")
        if index == 0:
            # The daemon itself: a new collection's first cycle runs at once.
            daemon = start_daemon(crash_env, log_path)
            assert daemon.wait(timeout=300) == -signal.SIGKILL, log_path.read_text()[-3000:]
        else:
            crashed = evolve_cli(crash_env, "once")
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]

        daemon = start_daemon(process_env(evolve_settings, tmp_path), log_path)
        try:
            wait_until(lambda b=before: settled(studio, b), 300, f"the roll-forward after {point}", daemon)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        check_story(studio, tokens, index + 1)

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    events = {line.get("event") for line in lines}
    assert {"daemon_start", "crash", "cycle_end", "daemon_stop"} <= events
    assert any(line.get("event") == "reconcile" for line in lines)  # after_send: found on chain, not resent
    assert evolve_settings.chain.private_key.get_secret_value() not in log_path.read_text()


def test_cli_once_dry_run_and_status(open_studio, evolve_settings, weather_api, tmp_path: Path) -> None:
    studio = open_studio()
    env = process_env(evolve_settings, tmp_path)
    status = evolve_cli(env, "status")
    assert status.returncode == 0
    assert "no collections" in status.stdout

    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    tokens = mint_living(studio, 2)
    weather_api.value = 30.0

    dry = evolve_cli(env, "dry-run", "--json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert sorted(c["token_id"] for c in report["would_change"]) == tokens
    assert report["estimated_gas"] > 0
    assert report["transactions"] == []
    assert studio.chain.client.metadata_version(tokens[0]) == 0
    # The steps as they happened went to stderr; stdout is the JSON alone.
    assert "Feeds read: temperature: 30.0" in dry.stderr
    assert "Generating 2/2" in dry.stderr

    once = evolve_cli(env, "once")
    assert once.returncode == 0, once.stderr[-3000:]
    assert "weather: cycle" in once.stdout
    assert f"evolved: {tokens}" in once.stdout
    assert f"Confirmed on chain: #{tokens[0]}" in once.stderr

    status = evolve_cli(env, "status", "--json")
    entry = json.loads(status.stdout)[0]
    assert entry["collection"] == "weather"
    assert entry["rules"] == "ok"
    assert entry["schedule"] == "every 1h"
    assert entry["last_cycle"]["status"] == "done"
    assert entry["last_cycle"]["evolved"] == 2
    assert entry["last_cycle"]["gas_used"] > 0
    assert entry["tokens_pending"] == {}
    assert entry["next_run"].startswith("not scheduled")
    text = evolve_cli(env, "status").stdout
    assert "weather: rules ok, every 1h" in text
    assert "last cycle: #" in text

    # A broken rules file: named line and field, exit code 2, nothing run.
    (studio.settings.rules_dir / "weather.toml").write_text(
        weather_rules(weather_api.url).replace("strength = 0.5", "strength = 5")
    )
    broken = evolve_cli(env, "once")
    assert broken.returncode == 2
    assert "weather.toml:6: evolution.strength:" in broken.stderr
