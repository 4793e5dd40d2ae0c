"""The embedded chain persists each confirmed transaction by appending to a journal (a cost that does
not grow with the chain), replays it after a crash exactly as mined, and folds it into a full dump
once it is as large as the dump."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contracts.errors import LocalChainError
from contracts.localchain import DEV_PRIVATE_KEYS, JOURNAL_FILE, STATE_FILE, LocalChain
from contracts.signer import Signer, make_web3

REPO_ROOT = Path(__file__).resolve().parents[2]


def send_some(chain: LocalChain, count: int) -> list[str]:
    signer = Signer.from_private_key(
        make_web3(chain.rpc_url), DEV_PRIVATE_KEYS[3], chain_id=31337, on_confirmed=chain.checkpoint
    )
    signer._nonces.next = None  # a fresh chain may reuse this process's cached sequence: ask the node
    return [signer.send({"to": signer.address, "value": i + 1}).tx_hash for i in range(count)]


def file_identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def test_a_confirmed_transaction_is_appended_not_a_rewrite_of_the_whole_state(tmp_path: Path) -> None:
    with LocalChain(tmp_path / "chain", port=0) as chain:
        state = tmp_path / "chain" / STATE_FILE
        before = file_identity(state)
        sent = send_some(chain, 3)
        assert file_identity(state) == before  # untouched: its cost would grow with the chain
        lines = [json.loads(line) for line in (tmp_path / "chain" / JOURNAL_FILE).read_text().splitlines()]
        assert [line["block"] for line in lines] == [1, 2, 3]
        assert all(len(line["txs"]) == 1 for line in lines)
        assert len(sent) == 3
    # A clean stop folds the journal into the dump.
    assert (tmp_path / "chain" / JOURNAL_FILE).stat().st_size == 0


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from contracts.localchain import DEV_PRIVATE_KEYS, LocalChain
    from contracts.signer import Signer, make_web3

    chain = LocalChain(sys.argv[1], port=0)
    chain.start()
    w3 = make_web3(chain.rpc_url)
    signer = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[3], chain_id=31337, on_confirmed=chain.checkpoint)
    for i in range(4):
        signer.send({"to": signer.address, "value": i + 1})
        time.sleep(1.1)  # blocks a second apart: the replay must give each its own time back
    blocks = [dict(w3.eth.get_block(n)) for n in range(w3.eth.block_number + 1)]
    print(json.dumps([[b["number"], b["timestamp"], [t.to_0x_hex() for t in b["transactions"]]] for b in blocks]),
          flush=True)
    time.sleep(600)
    """
)


def test_after_a_sigkill_the_journal_is_replayed_exactly_as_mined(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(state_dir)], stdout=subprocess.PIPE, env=env)
    try:
        line = child.stdout.readline()
        assert line, "the child exited before reporting its blocks"
        mined = json.loads(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert len(mined) == 5  # genesis and four blocks, only in the journal
    assert (state_dir / JOURNAL_FILE).stat().st_size > 0

    with LocalChain(state_dir, port=0) as chain:
        w3 = make_web3(chain.rpc_url)
        again = [dict(w3.eth.get_block(n)) for n in range(w3.eth.block_number + 1)]
        replayed = [[b["number"], b["timestamp"], [t.to_0x_hex() for t in b["transactions"]]] for b in again]
        # The same blocks at the same times with the same transactions (what the studio records: the
        # transaction hash and block number of each version). Block hashes are not compared: anvil
        # fills some header fields anew when it mines a block again.
        assert replayed == mined
        assert (state_dir / JOURNAL_FILE).stat().st_size == 0  # folded into the dump after the replay
        assert len(send_some(chain, 1)) == 1  # and the chain goes on


def test_the_journal_is_folded_into_the_dump_once_as_large_as_it(tmp_path: Path) -> None:
    with LocalChain(tmp_path / "chain", port=0) as chain:
        chain.compact_min_bytes = 1
        state = tmp_path / "chain" / STATE_FILE
        journal = tmp_path / "chain" / JOURNAL_FILE
        folds = 0
        last = file_identity(state)
        for _ in range(40):
            send_some(chain, 1)
            if file_identity(state) != last:
                folds += 1
                last = file_identity(state)
                assert journal.stat().st_size == 0
            assert journal.stat().st_size < max(state.stat().st_size, 1) + 4096
        # Folded now and then, not after every transaction: each fold waits for a journal as large as the dump.
        assert 0 < folds < 40


def test_a_torn_last_line_is_dropped_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    with LocalChain(state_dir, port=0):
        pass
    journal = state_dir / JOURNAL_FILE
    journal.write_text('{"block": 1, "timesta')  # a crash while appending: never reported confirmed
    with LocalChain(state_dir, port=0) as chain:
        assert make_web3(chain.rpc_url).eth.block_number == 0
    journal.write_text('{"block": 1, "timesta\n{"block": 2, "timestamp": 1, "txs": []}\n')
    with pytest.raises(LocalChainError, match="damaged at line 1"):
        LocalChain(state_dir, port=0).start()
