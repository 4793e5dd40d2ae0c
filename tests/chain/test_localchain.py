"""The embedded chain keeps everything confirmed across a clean stop and a SIGKILL of the studio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from contracts.client import LivingNFTClient
from contracts.errors import LocalChainError
from contracts.localchain import DEV_PRIVATE_KEYS, PID_FILE, LocalChain
from contracts.signer import Signer, make_web3
from studio.services.chain import open_chain

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_restart_after_clean_stop_keeps_tokens_and_history(settings, db, make_cid):
    session = open_chain(settings, db)
    artist = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    minted = session.client.mint(artist, make_cid("kept"))
    session.client.evolve(minted.token_id, make_cid("kept-1"), 0)
    address = session.contract_address
    session.close()

    again = open_chain(settings, db)
    try:
        assert again.contract_address == address  # reused, not redeployed
        assert not again.deployed_now
        assert again.client.owner_of(minted.token_id) == artist
        assert again.client.metadata_cid(minted.token_id) == make_cid("kept-1")
        assert [h.metadata_cid for h in again.client.history(minted.token_id)] == [make_cid("kept"), make_cid("kept-1")]
        assert again.client.mint(artist, make_cid("next")).token_id == minted.token_id + 1
    finally:
        again.close()


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from studio.config import load_settings
    from studio.db import open_database
    from studio.services.chain import open_chain
    from contracts.cid import raw_cid_of

    settings = load_settings(data_dir=sys.argv[1], chain={"local_port": 0})
    session = open_chain(settings, open_database(settings))
    minted = [session.client.mint(session.address, raw_cid_of(f"crash-{i}".encode())).token_id for i in range(3)]
    session.client.evolve(minted[0], raw_cid_of(b"crash-evolved"), 0)
    print(json.dumps({"tokens": minted, "contract": session.contract_address,
                      "anvil_pid": session.local_chain.pid}), flush=True)
    time.sleep(600)
    """
)


def test_sigkill_of_the_studio_loses_nothing_confirmed(tmp_path, settings, db, make_cid):
    data_dir = settings.data_dir
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)], stdout=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        line = child.stdout.readline()
        assert line, "the child studio exited before reporting its mints"
        report = json.loads(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    # anvil dies with the studio (PR_SET_PDEATHSIG), so the port and the state folder are free again.
    deadline = time.monotonic() + 20
    while Path(f"/proc/{report['anvil_pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{report['anvil_pid']}").exists()

    session = open_chain(settings, db)
    try:
        assert session.contract_address == report["contract"]
        client = session.client
        assert [client.owner_of(t) for t in report["tokens"]] == [session.address] * 3
        assert client.metadata_cid(report["tokens"][0]) == make_cid("crash-evolved")
        assert client.metadata_version(report["tokens"][0]) == 1
        assert client.metadata_cid(report["tokens"][2]) == make_cid("crash-2")
    finally:
        session.close()


def test_a_stale_anvil_of_a_dead_studio_is_replaced(tmp_path, make_cid):
    """An anvil left running by a studio that died (no death signal) is stopped; the checkpoint wins."""
    state_dir = tmp_path / "chain"
    chain = LocalChain(state_dir, port=0)
    chain.start()
    w3 = make_web3(chain.rpc_url)
    signer = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[0], chain_id=31337, on_confirmed=chain.checkpoint)
    client, _ = LivingNFTClient.deploy(signer, name="S", symbol="S", royalty_receiver=signer.address, royalty_bps=0)
    stale_pid = chain.pid
    # Pretend the owner was another, now dead, process: rewrite the pid file's owner line.
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait()
    pid_path = state_dir / PID_FILE
    lines = pid_path.read_text().splitlines()
    pid_path.write_text(f"{lines[0]}\n{lines[1]}\n{dead_owner.pid}\n")
    chain._process = None  # forget it, as a new studio process would

    again = LocalChain(state_dir, port=0)
    try:
        again.start()
        assert not Path(f"/proc/{stale_pid}").exists() or _is_zombie(stale_pid)
        w3 = make_web3(again.rpc_url)
        assert w3.eth.get_code(client.address)  # the checkpointed deployment is there
    finally:
        again.stop()


def test_a_live_studio_owning_the_chain_is_not_disturbed(tmp_path):
    state_dir = tmp_path / "chain"
    with LocalChain(state_dir, port=0) as owner:
        lines = (state_dir / PID_FILE).read_text().splitlines()
        keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            (state_dir / PID_FILE).write_text(f"{lines[0]}\n{lines[1]}\n{keeper.pid}\n")
            with pytest.raises(LocalChainError, match="already running"):
                LocalChain(state_dir, port=0).start()
            assert owner.running
        finally:
            keeper.kill()
            keeper.wait()


def test_torn_state_file_gives_a_clear_error(tmp_path):
    state_dir = tmp_path / "chain"
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"block": {"number": ')
    with pytest.raises(LocalChainError, match="state"):
        LocalChain(state_dir, port=0).start()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


def test_anvil_gives_no_cors_allowance_to_a_web_page(anvil_chain):
    """A page the operator visits must not be able to drive the unlocked dev account from the browser."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}
    origin = {"Origin": "https://evil.example"}
    preflight = httpx.options(
        anvil_chain.rpc_url,
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=10,
    )
    posted = httpx.post(anvil_chain.rpc_url, json=body, headers=origin, timeout=10)
    assert posted.status_code == 200  # the studio itself (no Origin check) still talks to it
    for response in (preflight, posted):
        allowed = {k.lower() for k in response.headers} & {
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
        }
        assert not allowed, f"anvil answered {response.request.method} with CORS headers {dict(response.headers)}"


NON_LOOPBACK = ["0.0.0.0", "192.0.2.10", "::", "chain.example"]  # noqa: S104 - refused, never bound


@pytest.mark.parametrize("host", NON_LOOPBACK)
def test_a_non_loopback_local_host_is_refused(tmp_path, host):
    with pytest.raises(LocalChainError, match="STUDIO_CHAIN__LOCAL_HOST"):
        LocalChain(tmp_path / "chain", host=host, port=0)
    assert not (tmp_path / "chain").exists()  # refused before anything started


def test_open_chain_refuses_a_non_loopback_local_host_before_starting(tmp_path):
    from studio.config import load_settings
    from studio.db import open_database

    settings = load_settings(data_dir=tmp_path / "data", chain={"local_port": 0, "local_host": "0.0.0.0"})  # noqa: S104
    with pytest.raises(LocalChainError, match="loopback"):
        open_chain(settings, open_database(settings))
    assert not (settings.chain_dir / "state.json").exists()
