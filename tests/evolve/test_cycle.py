"""The evolution cycle end to end: real anvil, real SQLite, the tiny model, the local IPFS store."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from evolve.cycle import run_cycle
from evolve.errors import CycleBusy
from evolve.journal import OPEN_STEPS, CycleStatus, StepStatus
from studio.owners import process_start
from studio.records import EvolveCycle, EvolveStep, Token, TokenVersion
from tests.fixtures.evolve import mint_living, weather_rules


def write_rules(studio, url: str, name: str = "weather") -> None:
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / f"{name}.toml").write_text(weather_rules(url))


def versions(studio, token_id: int) -> list[TokenVersion]:
    with studio.db.session() as session:
        token = session.scalar(select(Token).where(Token.token_id == token_id))
        return list(token.versions)


def test_full_cycle_regenerates_pins_updates_chain_and_records(open_studio, weather_api) -> None:
    studio = open_studio()
    write_rules(studio, weather_api.url)
    tokens = mint_living(studio, 3)
    client = studio.chain.client
    weather_api.value = -5.0

    report = run_cycle(studio, "weather")
    assert report.status == CycleStatus.DONE, report.errors
    assert sorted(report.evolved) == tokens
    assert report.gas_used > 0
    assert len(report.transactions) == 1  # one batch for the three
    snapshot = json.loads(studio.store.cat(report.snapshot_cid))
    assert snapshot["feeds"]["temperature"]["value"] == -5.0

    for token_id in tokens:
        chain_versions = versions(studio, token_id)
        assert [v.version for v in chain_versions] == [0, 1]
        v0, v1 = chain_versions
        assert client.token_uri(token_id) == f"ipfs://{v1.metadata_cid}"
        assert v1.previous_metadata_cid == v0.metadata_cid
        assert v1.feed_snapshot_cid == report.snapshot_cid
        assert v1.state["traits"] == {"weather": "frozen"}
        metadata = json.loads(studio.store.cat(v1.metadata_cid))
        assert metadata["image"] == f"ipfs://{v1.image_cid}"
        assert metadata["provenance"]["previous"] == f"ipfs://{v0.metadata_cid}"
        assert metadata["provenance"]["feed_snapshot"] == f"ipfs://{report.snapshot_cid}"
        assert metadata["provenance"]["generation"]["init_image"] == f"ipfs://{v0.image_cid}"
        assert metadata["provenance"]["generation"]["strength"] == 0.5
        assert {"trait_type": "Weather", "value": "frozen"} in metadata["attributes"]
        assert studio.store.has(v1.image_cid)
        history = client.history(token_id)
        assert [(h.version, h.metadata_cid) for h in history] == [(0, v0.metadata_cid), (1, v1.metadata_cid)]

    # Same range, same state: nothing regenerated, nothing sent.
    weather_api.value = -9.0
    nonce = studio.chain.w3.eth.get_transaction_count(studio.chain.address)
    quiet = run_cycle(studio, "weather")
    assert quiet.status == CycleStatus.DONE
    assert quiet.evolved == []
    assert quiet.unchanged == 3
    assert studio.chain.w3.eth.get_transaction_count(studio.chain.address) == nonce

    # Warmer: version 2, chained to version 1.
    weather_api.value = 12.0
    warm = run_cycle(studio, "weather")
    assert sorted(warm.evolved) == tokens
    v1, v2 = versions(studio, tokens[0])[1:]
    assert v2.previous_metadata_cid == v1.metadata_cid
    assert v2.state["traits"] == {"weather": "mild"}
    assert client.metadata_version(tokens[0]) == 2
    with studio.db.session() as session:
        assert session.scalar(select(EvolveStep).where(EvolveStep.step != StepStatus.RECORDED)) is None
        cycles = session.scalars(select(EvolveCycle).order_by(EvolveCycle.id)).all()
        assert [c.status for c in cycles] == [CycleStatus.DONE] * 3


def setup_collection(studio, weather_api, count: int = 3) -> list[int]:
    write_rules(studio, weather_api.url)
    return mint_living(studio, count)


def open_steps(studio) -> dict[int, str]:
    with studio.db.session() as session:
        rows = session.scalars(select(EvolveStep).where(EvolveStep.step.in_(OPEN_STEPS)))
        return {row.token_id: row.step for row in rows}


def test_gas_budget_sends_what_fits_and_the_rest_waits(open_studio, weather_api, make_cid) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api)
    one = studio.chain.client.estimate_evolve_batch([(tokens[0], make_cid("x"), 0)])
    studio.settings.evolve.cycle_gas_budget = int(one * 1.2)  # room for one token per cycle
    weather_api.value = -5.0

    first = run_cycle(studio, "weather")
    assert first.status == CycleStatus.PARTIAL
    assert first.evolved == [tokens[0]]
    assert set(first.pending) == {str(t) for t in tokens[1:]}
    assert all("gas budget" in reason for reason in first.pending.values())
    assert open_steps(studio) == {tokens[1]: StepStatus.PINNED, tokens[2]: StepStatus.PINNED}

    second = run_cycle(studio, "weather")
    assert second.evolved == [tokens[1]]
    assert second.generation_s == 0  # the pinned version waited; nothing regenerated
    studio.settings.evolve.cycle_gas_budget = 30_000_000
    third = run_cycle(studio, "weather")
    assert third.evolved == [tokens[2]]
    assert third.status == CycleStatus.DONE
    assert open_steps(studio) == {}
    assert [studio.chain.client.metadata_version(t) for t in tokens] == [1, 1, 1]


def test_fee_spike_above_cap_waits_and_is_reported(open_studio, weather_api) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    w3 = studio.chain.w3
    weather_api.value = -5.0
    try:
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(1000 * 10**9)])
        w3.provider.make_request("evm_mine", [])
        spiked = run_cycle(studio, "weather")
    finally:
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])
        w3.provider.make_request("evm_mine", [])
    assert spiked.status == CycleStatus.PARTIAL
    assert spiked.evolved == []
    assert "fee spike" in spiked.errors[0]
    assert "STUDIO_CHAIN__MAX_FEE_GWEI" in spiked.errors[0]
    assert all("fee above the cap" in reason for reason in spiked.pending.values())
    assert open_steps(studio) == {t: StepStatus.PINNED for t in tokens}
    assert studio.chain.client.metadata_version(tokens[0]) == 0

    calm = run_cycle(studio, "weather")
    assert calm.status == CycleStatus.DONE
    assert sorted(calm.evolved) == tokens
    assert calm.generation_s == 0


def test_dry_run_reports_changes_and_gas_and_sends_nothing(open_studio, weather_api) -> None:
    from studio.records import Pin

    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    weather_api.value = 30.0
    nonce = studio.chain.w3.eth.get_transaction_count(studio.chain.address)
    report = run_cycle(studio, "weather", dry_run=True)
    assert report.dry_run
    assert report.status == CycleStatus.DONE
    assert sorted(c["token_id"] for c in report.would_change) == tokens
    assert all(c["state"]["traits"] == {"weather": "scorching"} for c in report.would_change)
    assert report.estimated_gas > 0
    assert report.gas_used == 0
    assert report.transactions == []
    assert studio.chain.w3.eth.get_transaction_count(studio.chain.address) == nonce
    assert studio.chain.client.metadata_version(tokens[0]) == 0
    assert open_steps(studio) == {}
    change = report.would_change[0]
    assert studio.store.has(change["metadata_cid"])  # in the local store for a look...
    with studio.db.session() as session:  # ...but pinned nowhere
        assert session.scalar(select(Pin).where(Pin.cid == change["metadata_cid"])) is None
        assert [v.version for v in session.scalars(select(TokenVersion))] == [0, 0]

    real = run_cycle(studio, "weather")
    assert sorted(real.evolved) == tokens


def studio_behind_rpc_proxy(open_studio, evolve_settings, flaky_proxy):
    """A studio whose RPC goes through a proxy the test can cut, before or after a transaction leaves."""
    proxy = flaky_proxy(evolve_settings.chain.rpc_url)
    settings = evolve_settings.model_copy(
        update={"chain": evolve_settings.chain.model_copy(update={"rpc_url": proxy.url, "rpc_timeout_s": 5})}
    )
    return open_studio(settings), proxy


def test_rpc_outage_after_the_transaction_left_is_reconciled_not_resent(
    open_studio, evolve_settings, weather_api, flaky_proxy
) -> None:
    studio, proxy = studio_behind_rpc_proxy(open_studio, evolve_settings, flaky_proxy)
    tokens = setup_collection(studio, weather_api, 2)
    weather_api.value = -5.0

    proxy.drop_on = ("eth_sendRawTransaction", "after")
    cut = run_cycle(studio, "weather")
    assert cut.status == CycleStatus.PARTIAL
    assert "chain error" in cut.errors[0]
    assert open_steps(studio) == {t: StepStatus.SENDING for t in tokens}

    proxy.up()
    assert studio.chain.client.metadata_version(tokens[0]) == 1  # it did go through
    nonce = studio.chain.w3.eth.get_transaction_count(studio.chain.address)
    after = run_cycle(studio, "weather")
    assert after.status == CycleStatus.DONE
    assert sorted(after.rolled_forward) == tokens
    assert after.evolved == []
    assert studio.chain.w3.eth.get_transaction_count(studio.chain.address) == nonce  # nothing resent
    for token_id in tokens:
        assert [h.version for h in studio.chain.client.history(token_id)] == [0, 1]
        assert [v.version for v in versions(studio, token_id)] == [0, 1]


def test_an_rpc_stall_while_estimating_is_not_a_batch_too_large(
    open_studio, evolve_settings, weather_api, flaky_proxy, caplog
) -> None:
    studio, proxy = studio_behind_rpc_proxy(open_studio, evolve_settings, flaky_proxy)
    tokens = setup_collection(studio, weather_api, 4)
    weather_api.value = -5.0
    # The cycle's own estimate passes; the next one (right before sending) gets no answer within the
    # RPC timeout (5 s) through web3's 5 tries: the node stalled. Then it answers again.
    proxy.stall_on = ("eth_estimateGas", 1, 5, 7.0)
    with caplog.at_level(logging.ERROR, logger="evolve.cycle"):
        stalled = run_cycle(studio, "weather")
    assert stalled.status == CycleStatus.PARTIAL
    assert stalled.transactions == []  # not cut into smaller batches and sent
    assert set(stalled.pending) == {str(t) for t in tokens}
    assert any(getattr(r, "event", None) == "rpc_stall" for r in caplog.records)

    after = run_cycle(studio, "weather")  # the node answers again: one batch, one transaction
    assert after.status == CycleStatus.DONE
    assert sorted(after.evolved) == tokens
    assert len(after.transactions) == 1


def test_rpc_outage_before_the_transaction_left_resends_it(
    open_studio, evolve_settings, weather_api, flaky_proxy
) -> None:
    studio, proxy = studio_behind_rpc_proxy(open_studio, evolve_settings, flaky_proxy)
    tokens = setup_collection(studio, weather_api, 2)
    weather_api.value = -5.0
    proxy.drop_on = ("eth_sendRawTransaction", "before")
    cut = run_cycle(studio, "weather")
    assert cut.status == CycleStatus.PARTIAL
    proxy.up()
    assert studio.chain.client.metadata_version(tokens[0]) == 0
    after = run_cycle(studio, "weather")
    assert after.status == CycleStatus.DONE
    assert sorted(after.evolved) == tokens
    assert after.rolled_forward == []
    for token_id in tokens:
        assert [h.version for h in studio.chain.client.history(token_id)] == [0, 1]


def test_pinning_outage_mid_cycle_loses_nothing(
    open_studio, evolve_settings, weather_api, pinata_standin, flaky_proxy
) -> None:
    proxy = flaky_proxy(pinata_standin.url)
    ipfs = evolve_settings.ipfs.model_copy(
        update={
            "backends": ["local", "pinata"],
            "pinata_jwt": SecretStr(pinata_standin.jwt),
            "pinata_api_url": proxy.url,
            "pinata_files_api_url": proxy.url,
            "retries": 0,
            "connect_timeout_s": 2,
            "read_timeout_s": 5,
        }
    )
    studio = open_studio(evolve_settings.model_copy(update={"ipfs": ipfs}))
    tokens = setup_collection(studio, weather_api, 3)  # minting pins through the proxy too
    weather_api.value = -5.0
    proxy.fail_after = 4  # the snapshot, then token 1's image, animation and metadata; then Pinata is down
    cut = run_cycle(studio, "weather")
    assert cut.status == CycleStatus.PARTIAL
    assert any("pinning failed" in reason for reason in cut.pending.values())
    assert set(cut.pending) == {str(t) for t in tokens[1:]}
    assert cut.evolved == [tokens[0]]  # what was pinned went on chain
    assert open_steps(studio) == {t: StepStatus.PLANNED for t in tokens[1:]}

    proxy.up()
    after = run_cycle(studio, "weather")
    assert after.status == CycleStatus.DONE
    assert sorted(after.evolved) == tokens[1:]
    for token_id in tokens:
        (v1,) = versions(studio, token_id)[1:]
        assert studio.chain.client.token_uri(token_id) == f"ipfs://{v1.metadata_cid}"
        assert pinata_standin.holds(v1.metadata_cid)


def set_writable(folder: Path, writable: bool) -> None:
    """Take write permission from a folder and its subfolders, or give it back. Root ignores
    permissions, so as root the folders are made immutable instead (ext4's `chattr +i`: EPERM for
    every user, as a read-only or foreign-owned folder gives)."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    for path in folders:
        if os.geteuid() != 0:
            path.chmod(0o755 if writable else 0o555)
        else:
            done = subprocess.run(["chattr", "-i" if writable else "+i", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot make a folder unwritable as root here (chattr: {done.stderr.decode().strip()})")


def test_a_store_that_cannot_be_written_makes_the_cycle_partial_with_the_cause(
    open_studio, weather_api, caplog
) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    weather_api.value = -5.0
    blocks = studio.settings.ipfs_dir / "blocks"
    set_writable(blocks, False)
    try:
        with caplog.at_level(logging.ERROR, logger="evolve.cycle"):
            report = run_cycle(studio, "weather")
    finally:
        set_writable(blocks, True)
    assert report.status == CycleStatus.PARTIAL
    assert set(report.pending) == {str(t) for t in tokens}
    assert all("pinning failed (PermissionError: " in reason for reason in report.pending.values())
    assert "cannot pin the feed snapshot" in report.errors[0]
    assert any(getattr(r, "event", None) == "pin_error" for r in caplog.records)
    with studio.db.session() as session:
        cycle = session.scalar(select(EvolveCycle).order_by(EvolveCycle.id.desc()).limit(1))
        assert (cycle.status, cycle.error) == (CycleStatus.PARTIAL, report.errors[0])

    after = run_cycle(studio, "weather")  # writable again: nothing was lost
    assert after.status == CycleStatus.DONE
    assert sorted(after.evolved) == tokens


def test_token_frozen_on_chain_is_left_alone(open_studio, weather_api) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    studio.chain.client.freeze(tokens[0])  # by its owner, outside the studio's records
    weather_api.value = -5.0
    report = run_cycle(studio, "weather")
    assert report.frozen == [tokens[0]]
    assert report.evolved == [tokens[1]]
    with studio.db.session() as session:
        assert session.scalar(select(Token.frozen).where(Token.token_id == tokens[0])) is True
    assert run_cycle(studio, "weather").tokens_considered == 1


def test_token_changed_outside_the_studio_is_left_alone_and_reported(open_studio, weather_api, make_cid) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    foreign = make_cid("set by another tool")
    studio.chain.client.evolve(tokens[0], foreign, 0)  # an evolver outside the studio
    weather_api.value = -5.0
    report = run_cycle(studio, "weather")
    assert report.evolved == [tokens[1]]
    assert "changed on chain outside the studio" in report.waiting[str(tokens[0])]
    assert studio.chain.client.metadata_cid(tokens[0]) == foreign  # not overwritten
    assert [v.version for v in versions(studio, tokens[0])] == [0]


def test_version_moved_on_chain_under_the_same_cid_is_refused_and_reported(open_studio, weather_api) -> None:
    # Another process re-sent the metadata the studio recorded: same CID, but the version ran ahead
    # (the two-process race). Evolving it from the studio's version would misnumber the chain's.
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    client = studio.chain.client
    client.evolve(tokens[0], client.metadata_cid(tokens[0]), 0)
    weather_api.value = -5.0

    report = run_cycle(studio, "weather")

    assert report.evolved == [tokens[1]]
    reason = report.waiting[str(tokens[0])]
    assert "version conflict" in reason
    assert "at version 1" in reason
    assert "on version 0" in reason
    assert client.metadata_version(tokens[0]) == 1  # the compare-and-set sent nothing for it
    assert [v.version for v in versions(studio, tokens[0])] == [0]
    assert tokens[0] not in open_steps(studio)  # its version built on v0 is dropped, not left to resend
    with studio.db.session() as session:
        step = session.scalars(select(EvolveStep).where(EvolveStep.token_id == tokens[0])).one()
        assert step.step == StepStatus.SUPERSEDED
        assert "version conflict" in (step.error or "")


def test_token_evolved_between_estimate_and_send_is_reported_and_the_rest_sent(
    open_studio, evolve_settings, weather_api, flaky_proxy, dev_signer, make_cid
) -> None:
    from contracts.client import LivingNFTClient

    studio, proxy = studio_behind_rpc_proxy(open_studio, evolve_settings, flaky_proxy)
    tokens = setup_collection(studio, weather_api, 3)
    studio.chain.client.grant_role("EVOLVER_ROLE", dev_signer.address)
    rival = LivingNFTClient(dev_signer, studio.chain.contract_address)  # straight to anvil, not via the proxy
    foreign = make_cid("a rival evolver got there first")
    # The rival's evolve is mined right before the cycle's batch transaction reaches the node.
    proxy.before_forward = ("eth_sendRawTransaction", lambda: rival.evolve(tokens[1], foreign, 0))
    weather_api.value = -5.0

    report = run_cycle(studio, "weather")

    assert proxy.before_forward is None  # the rival did move in between
    assert sorted(report.evolved) == [tokens[0], tokens[2]]
    assert report.status == CycleStatus.DONE, report.errors
    assert "version conflict" in report.waiting[str(tokens[1])]
    assert studio.chain.client.metadata_cid(tokens[1]) == foreign  # the rival's change stands
    assert [h.version for h in studio.chain.client.history(tokens[1])] == [0, 1]
    assert [v.version for v in versions(studio, tokens[1])] == [0]
    for token_id in (tokens[0], tokens[2]):
        assert [h.version for h in studio.chain.client.history(token_id)] == [0, 1]
        assert [v.version for v in versions(studio, token_id)] == [0, 1]
    assert open_steps(studio) == {}

    again = run_cycle(studio, "weather")  # the next cycle sees the outside change and leaves it alone
    assert "changed on chain outside the studio" in again.waiting[str(tokens[1])]


def test_broken_feed_keeps_the_cycle_going(open_studio, weather_api) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    weather_api.value = float("nan")
    report = run_cycle(studio, "weather")
    # Its only feed failed: the cycle is partial and says why (never "done" with no error).
    assert report.status == CycleStatus.PARTIAL
    assert "value is nan" in report.feeds["temperature"]
    assert report.errors == [f"feed temperature: {report.feeds['temperature']}"]
    with studio.db.session() as session:
        assert "feed temperature:" in session.scalar(select(EvolveCycle.error).order_by(EvolveCycle.id.desc()))
    assert report.waiting == {str(t): "no value yet for weather" for t in tokens}
    assert report.evolved == []
    snapshot = json.loads(studio.store.cat(report.snapshot_cid))
    assert snapshot["feeds"]["temperature"]["ok"] is False


def test_missing_model_leaves_tokens_waiting_with_the_reason(open_studio, evolve_settings, weather_api) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 2)
    studio.close()
    missing = evolve_settings.model.model_copy(update={"model_id": str(evolve_settings.data_dir / "no-model")})
    broken = open_studio(evolve_settings.model_copy(update={"model": missing}))
    weather_api.value = -5.0
    report = run_cycle(broken, "weather")
    assert report.status == CycleStatus.PARTIAL
    assert report.evolved == []
    assert set(report.pending) == {str(t) for t in tokens}
    assert all("generation failed (ModelNotAvailableError)" in r for r in report.pending.values())
    assert "no-model" in report.errors[0]
    broken.close()

    fixed = open_studio()
    assert sorted(run_cycle(fixed, "weather").evolved) == tokens


def test_on_chain_activity_evolves_only_the_token_that_moved(open_studio, funded_account) -> None:
    studio = open_studio()
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "travel.toml").write_text(
        """\
[schedule]
every = "1d"
[evolution]
prompt = "{prompt}, {journey}"
[feeds.activity]
type = "activity"
[traits.journey]
input = "activity.transfers"
[[traits.journey.cases]]
at_least = 1
fragment = "well travelled"
[[traits.journey.cases]]
fragment = "at home"
"""
    )
    tokens = mint_living(studio, 2, rules_name="travel")
    first = run_cycle(studio, "travel")
    assert sorted(first.evolved) == tokens
    assert json.loads(studio.store.cat(first.snapshot_cid))["feeds"]["activity"]["per_token"][str(tokens[0])][
        "holder"
    ] == (studio.chain.address)

    studio.chain.client.transfer(funded_account.address, tokens[1])
    second = run_cycle(studio, "travel")
    assert second.evolved == [tokens[1]]
    assert second.unchanged == 1
    assert versions(studio, tokens[1])[-1].state["traits"] == {"journey": "well travelled"}


def test_batches_split_under_the_per_transaction_budget(open_studio, weather_api, make_cid) -> None:
    studio = open_studio()
    tokens = setup_collection(studio, weather_api, 3)
    client = studio.chain.client
    one = client.estimate_evolve_batch([(tokens[0], make_cid("x"), 0)])
    studio.settings.chain.batch_gas_budget = int(one * client.signer.policy.gas_buffer * 1.2)  # one token per tx
    weather_api.value = -5.0
    report = run_cycle(studio, "weather")
    assert report.status == CycleStatus.DONE
    assert sorted(report.evolved) == tokens
    assert len(report.transactions) == 3
    for token_id in tokens:
        recorded = versions(studio, token_id)[-1]
        mined = client.history(token_id)[-1]
        assert (recorded.tx_hash, recorded.block_number) == (mined.tx_hash, mined.block_number)
    assert len({versions(studio, t)[-1].tx_hash for t in tokens}) == 3


def test_one_cycle_per_collection_at_a_time_and_dead_owners_are_taken_over(open_studio, weather_api) -> None:
    studio = open_studio()
    setup_collection(studio, weather_api, 1)
    # A dead owner as the studio writes one (host:pid:start), taken while its process ran: a reused pid
    # has another start time, so the owner stays dead whichever process gets that pid later.
    ended = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_owner = f"{socket.gethostname()}:{ended.pid}:{process_start(ended.pid)}"
    ended.kill()
    ended.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with studio.db.session() as session:
            session.add(EvolveCycle(collection="weather", owner=f"{socket.gethostname()}:{alive.pid}"))
        with pytest.raises(CycleBusy, match=f"running in process {socket.gethostname()}:{alive.pid}"):
            run_cycle(studio, "weather")
    finally:
        alive.kill()
        alive.wait()
    with studio.db.session() as session:
        busy = session.scalar(select(EvolveCycle).where(EvolveCycle.status == CycleStatus.RUNNING))
        busy.owner = dead_owner
    report = run_cycle(studio, "weather")
    assert report.status == CycleStatus.DONE
    with studio.db.session() as session:
        taken = session.scalar(select(EvolveCycle).order_by(EvolveCycle.id).limit(1))
        assert taken.status == CycleStatus.INTERRUPTED
        assert "rolled forward" in taken.error
