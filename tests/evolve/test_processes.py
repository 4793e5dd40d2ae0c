"""Two processes, one collection: the database lets one cycle run per collection and one scheduler
run per database; `status` says which process owns what and whether it still lives."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from sqlalchemy import select

from evolve.cycle import run_cycle
from evolve.journal import CycleStatus
from evolve.status import collection_status
from studio.records import EvolveCycle
from tests.fixtures.evolve import mint_living, weather_rules
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.processes import evolve_cli, process_env, start_daemon, wait_until
from tests.fixtures.races import assert_one_started_one_busy, begin_two_cycles_at_once


def test_two_processes_starting_a_cycle_at_once_get_one_cycle(settings, db) -> None:
    outcomes = begin_two_cycles_at_once(settings.resolved_database_url)
    assert_one_started_one_busy(outcomes)
    with db.session() as session:
        running = session.scalars(select(EvolveCycle).where(EvolveCycle.status == CycleStatus.RUNNING)).all()
        assert len(running) == 1


def events(log_path: Path) -> list[dict]:
    text = log_path.read_text() if log_path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def has_event(log_path: Path, name: str) -> bool:
    return any(e.get("event") == name for e in events(log_path))


def test_a_second_daemon_waits_for_the_first_and_takes_over_when_it_dies(
    open_studio, evolve_settings, tmp_path: Path
) -> None:
    open_studio()  # the database, migrated
    env = process_env(evolve_settings, tmp_path, STUDIO_EVOLVE__SCHEDULER_LEASE_S="3")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_daemon(env, first_log)
    second = None
    try:
        wait_until(lambda: has_event(first_log, "daemon_start"), 120, "the first daemon", first)
        second = start_daemon(env, second_log)
        wait_until(lambda: has_event(second_log, "scheduler_waiting"), 120, "the second daemon to wait", second)
        waiting = next(e for e in events(second_log) if e.get("event") == "scheduler_waiting")
        assert waiting["holder"].split(":")[1] == str(first.pid)
        assert not has_event(second_log, "daemon_start")  # it schedules nothing while it waits
        status = evolve_cli(env, "status")
        assert f"scheduler: running in process {waiting['holder']}" in status.stdout

        first.kill()
        first.wait(timeout=30)
        wait_until(lambda: has_event(second_log, "scheduler_leader"), 120, "the take-over", second)
        assert has_event(second_log, "daemon_start")
        status = evolve_cli(env, "status")
        assert f":{second.pid}:" in status.stdout.splitlines()[0]
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0, second_log.read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert "scheduler: none running" in evolve_cli(env, "status").stdout  # released on a clean stop


def test_a_killed_cycle_is_not_shown_running_and_its_gas_is_counted_when_rolled_forward(
    open_studio, evolve_settings, weather_api, tmp_path: Path
) -> None:
    studio = open_studio()
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    tokens = mint_living(studio, 2)
    weather_api.value = -5.0
    # A real `once` process, SIGKILLed right after its batch was sent (its own crash point).
    crashed = evolve_cli(process_env(evolve_settings, tmp_path, STUDIO_CRASH_AT="evolve:after_send"), "once")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]

    (entry,) = collection_status(studio)
    assert entry["last_cycle"]["status"] == CycleStatus.INTERRUPTED
    assert "stopped during the cycle" in entry["last_cycle"]["error"]
    shown = evolve_cli(process_env(evolve_settings, tmp_path), "status").stdout
    assert " running at " not in shown
    assert "interrupted" in shown

    report = run_cycle(studio, "weather")
    assert sorted(report.rolled_forward) == tokens
    client = studio.chain.client
    sent = {h.tx_hash for t in tokens for h in client.history(t) if h.version > 0}
    assert len(sent) == 1  # the killed process's batch
    gas = sum(studio.chain.signer.receipt(tx)["gasUsed"] for tx in sent)
    assert report.gas_used == gas
    (entry,) = collection_status(studio)
    assert entry["gas_spent_total"] == gas
    assert entry["last_cycle"]["gas_used"] == gas


def test_an_attempt_while_another_process_holds_the_embedded_chain_is_not_a_failed_cycle(
    settings, weather_api, tmp_path: Path
) -> None:
    from studio.services.studio import Studio

    with Studio.open(settings) as studio:
        studio.start_chain()  # this process now runs the embedded chain of the data directory
        studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
        (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
        env.update(
            STUDIO_CONFIG=str(tmp_path / "no-studio.toml"),
            STUDIO_DATA_DIR=str(settings.data_dir),
            STUDIO_CHAIN__LOCAL_PORT="0",
            PYTHONPATH=str(REPO_ROOT),
        )
        refused = evolve_cli(env, "once")
        assert refused.returncode == 1, refused.stderr[-4000:]
        assert "already running, owned by process" in refused.stderr
        with studio.db.session() as session:
            assert session.scalars(select(EvolveCycle)).all() == []  # nothing stored: it did nothing


def test_a_transaction_waiting_to_be_mined_blocks_the_cycle_and_status_says_which(
    open_studio, evolve_settings, weather_api, tmp_path: Path
) -> None:
    from eth_account import Account

    studio = open_studio()
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    tokens = mint_living(studio, 1)
    weather_api.value = -5.0
    w3 = studio.chain.w3
    account = Account.from_key(evolve_settings.chain.private_key.get_secret_value())
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        # Another tool sent from the studio's account; the node has not mined it.
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        tx = {
            "to": account.address,
            "value": 1,
            "gas": 21_000,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": base,
            "maxPriorityFeePerGas": 0,
            "type": 2,
        }
        waiting = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction).to_0x_hex()
        blocked = run_cycle(studio, "weather")
        shown = evolve_cli(process_env(evolve_settings, tmp_path), "status").stdout
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        w3.provider.make_request("evm_mine", [])
    assert blocked.status == CycleStatus.PARTIAL
    assert blocked.evolved == []
    assert waiting in blocked.blocked
    assert f"nonce {tx['nonce']}: {waiting}" in blocked.blocked
    assert f"BLOCKED: blocked: 1 transaction(s) from {account.address} wait to be mined" in shown
    assert waiting in shown

    after = run_cycle(studio, "weather")  # mined: the cycle goes on
    assert after.status == CycleStatus.DONE
    assert after.evolved == tokens
    (entry,) = collection_status(studio)
    assert entry["last_cycle"]["blocked"] is None


def test_a_lease_held_from_another_machine_is_taken_over_when_it_expires(open_studio) -> None:
    from datetime import UTC, datetime, timedelta

    from evolve.scheduler import start_background
    from studio.records import EvolveLease

    studio = open_studio()
    studio.settings.evolve.scheduler_lease_s = 3
    elsewhere = "another-host:4242:99"  # no pid here can answer for it: only its lease's expiry
    with studio.db.session() as session:
        session.add(
            EvolveLease(name="scheduler", holder=elsewhere, expires_at=datetime.now(UTC) + timedelta(seconds=4))
        )
    service = start_background(studio)
    try:
        assert not service.leading
        assert service.waiting_for == elsewhere
        assert not service.scheduler.running
        wait_until(lambda: service.leading, 60, "the take-over after the lease expired")
        assert service.scheduler.running
        with studio.db.session() as session:
            assert session.get(EvolveLease, "scheduler").holder == service.lease.holder
    finally:
        service.stop()
    with studio.db.session() as session:
        assert session.get(EvolveLease, "scheduler") is None  # released on stop
