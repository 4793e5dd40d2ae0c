"""What persisting the embedded chain costs per confirmed transaction, from an empty chain to one holding
10,000 tokens (BENCH_TOKENS to change it).

The studio persists after every confirmed transaction (LocalChain.checkpoint, before it reports the
transaction confirmed). It used to dump the whole state each time, a cost that grows with the chain;
it now appends the new blocks to a journal and folds the journal into a full dump only once it is as
large as the dump. Prints ONE JSON line:

- batch_checkpoint_ms_early / _late: median checkpoint time after an evolve batch of 100 tokens, on a
  chain of 100 tokens and on one of 10,000 (growth = late / early, about 1.0 when it does not grow);
- mint_checkpoint_ms_mean: the mean over every mint, folds included (their amortized cost);
- full_dump_ms_early / _late: what one full dump (the old per-transaction checkpoint) costs at each size;
- folds, state_bytes, journal_bytes, wall_s.

    .venv/bin/python bench/chainstate.py
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.cid import raw_cid_of
from contracts.client import LivingNFTClient
from contracts.localchain import DEV_PRIVATE_KEYS, JOURNAL_FILE, LOCAL_CHAIN_ID, STATE_FILE, LocalChain
from contracts.signer import Signer, make_web3

TOKENS = int(os.environ.get("BENCH_TOKENS", "10000"))
BATCH = 100
BATCHES = 10


def cid(label: str) -> str:
    return raw_cid_of(hashlib.sha256(label.encode()).digest())


class TimedCheckpoint:
    """LocalChain.checkpoint, timed; counts the folds (the state file replaced)."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.times: list[float] = []
        self.folds = 0
        self._state = chain.state_dir / STATE_FILE
        self._identity = self._state.stat().st_ino

    def __call__(self) -> None:
        started = time.perf_counter()
        self.chain.checkpoint()
        self.times.append(time.perf_counter() - started)
        identity = self._state.stat().st_ino
        if identity != self._identity:
            self.folds += 1
            self._identity = identity


def full_dump_ms(chain: LocalChain) -> float:
    """One full dump, as every checkpoint used to write (best of three)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with chain._lock:
            chain._dump_state()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def evolve_batches(client: LivingNFTClient, timer: TimedCheckpoint, ids: list[int], round_name: str) -> float:
    """BATCHES evolve batches of BATCH tokens; the median checkpoint time after each, in ms."""
    times = []
    for index in range(BATCHES):
        client.evolve_batch([(t, cid(f"{round_name}-{index}-{t}")) for t in ids])
        times.append(timer.times[-1])
    return statistics.median(times) * 1000


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LocalChain(Path(tmp), port=0) as chain:
        timer = TimedCheckpoint(chain)
        w3 = make_web3(chain.rpc_url)
        signer = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[0], chain_id=LOCAL_CHAIN_ID, on_confirmed=timer)
        client, _ = LivingNFTClient.deploy(
            signer, name="Bench", symbol="B", royalty_receiver=signer.address, royalty_bps=500
        )
        client.grant_role("MINTER_ROLE", signer.address)
        client.grant_role("EVOLVER_ROLE", signer.address)
        artist = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[1], chain_id=LOCAL_CHAIN_ID).address

        first = [client.mint(artist, cid(f"m{i}")).token_id for i in range(BATCH)]
        early = evolve_batches(client, timer, first, "early")
        dump_early = full_dump_ms(chain)
        mint_times_from = len(timer.times)
        for i in range(BATCH, TOKENS):
            client.mint(artist, cid(f"m{i}"))
        mint_times = timer.times[mint_times_from:]
        late_ids = list(range(TOKENS - BATCH + 1, TOKENS + 1))
        late = evolve_batches(client, timer, late_ids, "late")
        dump_late = full_dump_ms(chain)
        figures = {
            "tokens": TOKENS,
            "batch_checkpoint_ms_early": round(early, 3),
            "batch_checkpoint_ms_late": round(late, 3),
            "growth": round(late / early, 3),
            "mint_checkpoint_ms_mean": round(statistics.mean(mint_times) * 1000, 3) if mint_times else None,
            "mint_checkpoint_ms_median": round(statistics.median(mint_times) * 1000, 3) if mint_times else None,
            "full_dump_ms_early": round(dump_early, 3),
            "full_dump_ms_late": round(dump_late, 3),
            "folds": timer.folds,
            "state_bytes": (chain.state_dir / STATE_FILE).stat().st_size,
            "journal_bytes": (chain.state_dir / JOURNAL_FILE).stat().st_size,
            "wall_s": round(time.perf_counter() - started, 1),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
