"""CIDv1 of a 50 MiB file versus the machine's raw sha256 speed on the same bytes, in the same run.

Prints one JSON line: cid_mb_s, sha256_mb_s, ratio (target >= 0.8), plus the store's add speed.
Each figure is the best of several runs (the least disturbed by other processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metadata.cid import cid_for_file
from metadata.store import LocalStore

SIZE = 50 * 1024 * 1024
ROUNDS = 5


def best_of(fn, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.bin"
        path.write_bytes(os.urandom(SIZE))

        def raw_sha256() -> None:
            digest = hashlib.sha256()
            with path.open("rb", buffering=0) as handle:
                while piece := handle.read(262_144):
                    digest.update(piece)
            digest.digest()

        cid_for_file(path)  # warm the page cache for both
        sha_s = best_of(raw_sha256)
        cid_s = best_of(lambda: cid_for_file(path))
        store = LocalStore(Path(tmp) / "ipfs", max_file_bytes=SIZE)
        add_s = best_of(lambda: store.add_file(path), rounds=2)
        mb = SIZE / 1e6
        print(
            json.dumps(
                {
                    "bench": "cid",
                    "file_mib": SIZE // (1024 * 1024),
                    "cid_mb_s": round(mb / cid_s, 1),
                    "sha256_mb_s": round(mb / sha_s, 1),
                    "ratio": round(sha_s / cid_s, 3),
                    "store_add_mb_s": round(mb / add_s, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
