"""Data for the content tests, made from the reference vectors' own recipe."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_DIR

# The reference vectors travel with the repo, so `make test` checks CIDs on any fresh clone; the team's
# shared reference copy (beside the checkout, where there is one) must stay identical.
VECTORS_PATH = Path(__file__).with_name("data") / "ipfs-cids.json"
SHARED_VECTORS_PATH = SHARED_DIR / "reference" / "ipfs-cids.json"
ORACLE = Path(__file__).with_name("unixfs_oracle.mjs")


def stream(seed: bytes, n: int) -> bytes:
    """The vectors' data recipe: sha256(seed || i as 8 big-endian bytes) for i = 0, 1, ... cut to n."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


@pytest.fixture(scope="session")
def vectors() -> dict:
    if not VECTORS_PATH.is_file():
        pytest.fail(f"reference CID vectors missing: {VECTORS_PATH}. Restore it from git.")
    if SHARED_VECTORS_PATH.is_file() and SHARED_VECTORS_PATH.read_bytes() != VECTORS_PATH.read_bytes():
        pytest.fail(f"{SHARED_VECTORS_PATH} changed: copy it to {VECTORS_PATH} so every clone tests the new vectors.")
    return json.loads(VECTORS_PATH.read_text())


@pytest.fixture(scope="session")
def vector_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every file and folder the vectors describe, written once per session."""
    root = tmp_path_factory.mktemp("vectors")
    files = {
        "hello.txt": b"hello world\n",
        "empty.bin": b"",
        "a_1KiB.bin": stream(b"nft-a", 1024),
        "f_256KiB_plus1.bin": stream(b"nft-f", 262145),
        "b_1MiB.bin": stream(b"nft-b", 1048576),
        "c_5MiB.bin": stream(b"nft-c", 5242880),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    dir3 = root / "dir3"
    dir3.mkdir()
    (dir3 / "1.json").write_bytes(b'{"name":"Piece #1","image":"ipfs://x/1.png"}\n')
    (dir3 / "2.json").write_bytes(b'{"name":"Piece #2","image":"ipfs://x/2.png"}\n')
    (dir3 / "cover.png").write_bytes(stream(b"nft-png", 3000))
    (root / "wrapped").mkdir()
    shutil.copytree(dir3, root / "wrapped" / "dir3")
    dir2k = root / "dir2k"
    dir2k.mkdir()
    for i in range(2000):
        entry = {"name": f"Piece #{i}", "image": f"ipfs://bafy/{i}.png"}
        entry["attributes"] = [{"trait_type": "seed", "value": (919 * i) % 1000}]
        (dir2k / f"{i}.json").write_bytes(json.dumps(entry).encode())
    return root


def oracle_cid(path: Path, version: int) -> str:
    """The root CID from js-ipfs-unixfs's importer (node), an implementation independent of ours."""
    if shutil.which("node") is None:
        pytest.fail("node is required for the independent CID oracle: install Node.js 20+ and run `make test`")
    if not (REPO_ROOT / "node_modules" / "ipfs-unixfs-importer").is_dir():
        pytest.fail("node_modules/ipfs-unixfs-importer is missing: run `npm ci` (make test does it)")
    done = subprocess.run(
        ["node", str(ORACLE), str(path), str(version)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
