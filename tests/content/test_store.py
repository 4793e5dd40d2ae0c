"""The local store: same CIDs as kubo, verified reads, corruption never served, atomic idempotent adds."""

from __future__ import annotations

import hashlib

import pytest

from metadata.cid import cid_for_directory
from metadata.errors import (
    BlockNotFoundError,
    ContentPathError,
    ContentReadError,
    ContentTooLargeError,
    CorruptBlockError,
)
from metadata.store import LocalStore


def test_added_content_has_kubo_cids_and_reads_back(local_store, vectors, vector_data):
    for name in ("hello.txt", "empty.bin", "c_5MiB.bin"):
        cid = local_store.add_file(vector_data / name)
        assert cid == vectors["files"][name]["v1"]
        assert local_store.cat(cid) == (vector_data / name).read_bytes()
    assert local_store.add_bytes(b"hello world\n") == vectors["files"]["hello.txt"]["v1"]


def test_ranges_inside_a_multi_block_file(local_store, vector_data):
    data = (vector_data / "c_5MiB.bin").read_bytes()
    reader = local_store.open(local_store.add_file(vector_data / "c_5MiB.bin"))
    assert reader.size == len(data)
    for start, end in [(0, 1), (262_140, 262_150), (1_000_000, 3_000_000), (len(data) - 5, len(data))]:
        assert reader.read(start, end) == data[start:end]


def test_directories_basic_and_sharded(local_store, vector_data, tmp_path):
    root = local_store.add_directory(vector_data / "wrapped")
    assert root == cid_for_directory(vector_data / "wrapped")
    assert [e.name for e in local_store.ls(root)] == ["dir3"]
    assert local_store.cat(root, "dir3/cover.png") == (vector_data / "dir3" / "cover.png").read_bytes()
    assert local_store.stat(root, "dir3").kind == "directory"

    folder = tmp_path / "collection"
    folder.mkdir()
    for i in range(6000):
        (folder / f"{i}.json").write_bytes(b'{"name":"Living #%d"}' % i)
    sharded = local_store.add_directory(folder)
    assert sharded == cid_for_directory(folder)
    assert local_store.cat(sharded, "4321.json") == b'{"name":"Living #4321"}'
    assert len(local_store.ls(sharded)) == 6000
    with pytest.raises(ContentPathError, match="does not exist"):
        local_store.cat(sharded, "6000.json")


def test_adding_twice_is_idempotent_and_repairs_a_damaged_block(local_store, vector_data):
    cid = local_store.add_file(vector_data / "hello.txt")
    block = next(p for p in (local_store.root / "blocks").rglob("*") if p.is_file())
    block.write_bytes(b"hello w0rld\n")
    with pytest.raises(CorruptBlockError, match="corrupted"):
        local_store.cat(cid)
    assert local_store.add_file(vector_data / "hello.txt") == cid
    assert local_store.cat(cid) == b"hello world\n"
    assert not [p for p in (local_store.root / "blocks").rglob(".tmp-*")]


def test_a_corrupted_inner_block_is_detected_not_served(local_store, vector_data):
    data = (vector_data / "b_1MiB.bin").read_bytes()
    cid = local_store.add_file(vector_data / "b_1MiB.bin")
    third_chunk_digest = hashlib.sha256(data[2 * 262144 : 3 * 262144]).hexdigest()
    path = local_store.root / "blocks" / third_chunk_digest[:2] / third_chunk_digest
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    reader = local_store.open(cid)
    assert reader.read(0, 262144) == data[:262144]  # blocks before the damage are fine
    with pytest.raises(CorruptBlockError):
        reader.read()


def test_missing_block_and_unknown_cid(local_store, vectors):
    unknown = vectors["files"]["a_1KiB.bin"]["v1"]
    assert not local_store.has(unknown)
    assert not local_store.has("not-a-cid")
    with pytest.raises(BlockNotFoundError, match="add or pin"):
        local_store.cat(unknown)


def test_size_limit_and_bad_paths(tmp_path):
    store = LocalStore(tmp_path / "ipfs", max_file_bytes=1000)
    (tmp_path / "big.bin").write_bytes(b"x" * 1001)
    with pytest.raises(ContentTooLargeError, match="STUDIO_IPFS__MAX_FILE_MB"):
        store.add_file(tmp_path / "big.bin")
    with pytest.raises(ContentTooLargeError):
        store.add_bytes(b"x" * 1001)
    with pytest.raises(ContentReadError, match="does not exist"):
        store.add_file(tmp_path / "missing.png")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "big.bin").write_bytes(b"x" * 1001)
    with pytest.raises(ContentTooLargeError):
        store.add_directory(folder)
    cid = store.add_bytes(b"small")
    with pytest.raises(ContentPathError, match="is a file"):
        store.cat(cid, "inside")


DURABLE_CHILD = """
import os, sys
from pathlib import Path
from metadata.store import LocalStore

store = LocalStore(Path(sys.argv[1]))
data = Path(sys.argv[2]).read_bytes()
cid = store.add_bytes(data[: 1024])  # one block
cid = store.add_bytes(data)  # several blocks, new shard folders
cid = store.add_directory(Path(sys.argv[3]))
store.add_bytes(data)  # all there already: synced again, nothing rewritten
os.write(1, b"REPORTED\\n")  # from here on the CIDs may be recorded (database, chain)
"""


def test_every_block_is_durable_before_its_cid_is_reported(tmp_path, vector_data):
    """Traced with strace, the kernel's own record of the calls: each block's bytes are fsynced before
    its rename, and every folder that gained a name is fsynced after the renames and before the CID is
    handed back. Without that a power cut can leave a recorded CID pointing at a missing block."""
    import re
    import shutil
    import subprocess
    import sys

    from tests.fixtures.paths import REPO_ROOT

    if not sys.platform.startswith("linux"):
        pytest.skip("strace, which shows the order of the system calls, is Linux only")
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is needed to observe fsync ordering: `make test` installs it, or `apt-get install strace`")
    root = tmp_path / "ipfs"
    trace = tmp_path / "trace.txt"
    done = subprocess.run(
        [strace, "-f", "-y", "-qq", "-s", "64", "-o", str(trace),
         "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,write",
         sys.executable, "-c", DURABLE_CHILD, str(root), str(vector_data / "b_1MiB.bin"), str(vector_data / "dir3")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "REPORTED\n"
    blocks = str((root / "blocks").resolve())
    synced: list[str] = []  # in order: ("F", path) for files, ("D", path) for folders
    renamed: dict[str, int] = {}  # block path -> index in `synced` when it was renamed into place
    made: dict[str, int] = {}
    reported_at = None
    for line in trace.read_text().splitlines():
        if match := re.search(r"fd?a?t?a?sync\(\d+<([^>]+)>\) = 0", line):
            synced.append(match.group(1))
        elif (match := re.search(r'rename\w*\(.*"([^"]+)", .*"([^"]+)"[^"]*\) = 0', line)) and blocks in match.group(2):
            assert match.group(1) in synced, f"{match.group(1)} renamed before its bytes were fsynced"
            renamed[match.group(2)] = len(synced)
        elif (match := re.search(r'mkdir\w*\(.*"([^"]+)"', line)) and match.group(1).startswith(blocks + "/"):
            made[match.group(1)] = len(synced)
        elif "write(1<" in line and "REPORTED" in line:
            reported_at = len(synced)
    assert reported_at is not None
    assert len(renamed) >= 5  # the trace saw the work it checks
    assert made
    for path, at in renamed.items():
        folder = path.rsplit("/", 1)[0]
        assert folder in synced[at:reported_at], f"{folder} not fsynced after {path} was renamed into it"
    for folder, at in made.items():
        assert blocks in synced[at:reported_at], f"{blocks} not fsynced after {folder} was created"
    assert not list(root.rglob(".tmp-*"))
    data = (vector_data / "b_1MiB.bin").read_bytes()
    fresh = LocalStore(root)  # a new reader (as after a restart) finds everything
    assert fresh.cat(fresh.add_bytes(data)) == data
