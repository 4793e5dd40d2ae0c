"""CIDs: every reference vector, and what the vectors do not cover against independent implementations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aleph_cid
import pytest

from metadata.cid import (
    cid_for_bytes,
    cid_for_directory,
    cid_for_file,
    parse_cid,
    raw_cid_digest,
    raw_cid_from_digest,
)
from metadata.errors import ContentReadError, InvalidCIDError
from tests.fixtures.cid_vectors import oracle_cid
from tests.fixtures.paths import REPO_ROOT

FILES = ["hello.txt", "empty.bin", "a_1KiB.bin", "f_256KiB_plus1.bin", "b_1MiB.bin", "c_5MiB.bin"]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("version", [0, 1])
def test_every_reference_file_cid_matches(vectors, vector_data, name, version):
    expected = vectors["files"][name][f"v{version}"]
    assert cid_for_file(vector_data / name, version=version) == expected
    assert cid_for_bytes((vector_data / name).read_bytes(), version=version) == expected


def test_reference_directory_leaves_match(vectors, vector_data):
    for name, expected in vectors["dir3_leaves_v1"].items():
        assert cid_for_file(vector_data / "dir3" / name) == expected


@pytest.mark.parametrize("version", [0, 1])
def test_every_reference_directory_cid_matches(vectors, vector_data, version):
    dirs = vectors["directories"]
    by_key = {key.split(" ")[0] + (" wrapped" if "wrapped" in key else ""): value for key, value in dirs.items()}
    assert cid_for_directory(vector_data / "dir3", version=version) == by_key["dir3"][f"v{version}"]
    assert cid_for_directory(vector_data / "wrapped", version=version) == by_key["dir3 wrapped"][f"v{version}"]
    assert cid_for_directory(vector_data / "dir2k", version=version) == by_key["dir2k"][f"v{version}"]


def test_dot_files_are_skipped_like_ipfs_add(vectors, vector_data, tmp_path):
    folder = tmp_path / "dir3"
    folder.mkdir()
    for child in (vector_data / "dir3").iterdir():
        (folder / child.name).write_bytes(child.read_bytes())
    (folder / ".DS_Store").write_bytes(b"finder junk")
    expected = next(v["v1"] for k, v in vectors["directories"].items() if k.startswith("dir3 ("))
    assert cid_for_directory(folder) == expected


@pytest.fixture(scope="module")
def collection_10k(tmp_path_factory) -> Path:
    """A 10,000-token metadata folder: large enough that kubo shards it (HAMT)."""
    folder = tmp_path_factory.mktemp("collection") / "metadata"
    folder.mkdir()
    for i in range(10_000):
        token = {
            "name": f"Living #{i}",
            "image": f"ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/{i}.png",
        }
        (folder / f"{i}.json").write_bytes(json.dumps(token, separators=(",", ":")).encode())
    return folder


@pytest.mark.parametrize("version", [0, 1])
def test_sharded_collection_folder_matches_independent_implementations(collection_10k, version):
    ours = cid_for_directory(collection_10k, version=version)
    assert ours == oracle_cid(collection_10k, version)
    assert ours == aleph_cid.hash_folder(collection_10k, cid_version=version)


def test_a_folder_exactly_at_the_shard_threshold_stays_basic(tmp_path):
    """Kubo shards only once the link estimate *exceeds* 262,144 bytes (4096 x (28 + 36) is exactly it).

    aleph-cid 0.1.0 shards at the threshold itself (older kubo behaviour), so only the js oracle,
    which follows current kubo, decides here; one byte more must shard in all three.
    """
    at = tmp_path / "at"
    over = tmp_path / "over"
    for folder, first in ((at, f"{0:028d}"), (over, f"{0:029d}")):
        folder.mkdir()
        (folder / first).write_bytes(b"x")
        for i in range(1, 4096):
            (folder / f"{i:028d}").write_bytes(b"x")
    assert cid_for_directory(at) == oracle_cid(at, 1)
    assert cid_for_directory(over) == oracle_cid(over, 1) == aleph_cid.hash_folder(over)
    assert cid_for_directory(at) != cid_for_directory(over)


@pytest.mark.slow
def test_large_file_spanning_two_tree_levels_matches_independent_implementations(tmp_path):
    """175 chunks: one more than a node holds, so the root gains a second level (balanced layout)."""
    path = tmp_path / "big.bin"
    chunk = bytes(range(256)) * 1024
    with path.open("wb") as handle:
        for i in range(175):
            handle.write(i.to_bytes(4, "big") + chunk[4:])
        handle.write(b"tail")
    for version in (0, 1):
        ours = cid_for_file(path, version=version)
        assert ours == oracle_cid(path, version)
        hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves() if version else aleph_cid.CidHasher.for_ipfs()
        with path.open("rb") as handle:
            while piece := handle.read(1 << 20):
                hasher.update(piece)
        assert ours == hasher.finalize()


def test_parse_cid_reads_both_versions_and_rejects_garbage(vectors):
    v1 = parse_cid(vectors["files"]["hello.txt"]["v1"])
    assert (v1.version, v1.codec_name) == (1, "raw")
    v0 = parse_cid(vectors["files"]["hello.txt"]["v0"])
    assert (v0.version, v0.codec_name, str(v0)) == (0, "dag-pb", vectors["files"]["hello.txt"]["v0"])
    assert str(parse_cid("ipfs://" + str(v1))) == str(v1)
    for bad, words in [
        ("", "empty"),
        ("hello", "not a CID"),
        ("Qm123", "instead of 46"),
        ("bafkrei!!!", "base32"),
        ("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2deve", "digest"),
    ]:
        with pytest.raises(InvalidCIDError, match=words):
            parse_cid(bad)


def test_raw_digest_round_trip_and_refusals(vectors):
    cid = vectors["files"]["a_1KiB.bin"]["v1"]
    digest = raw_cid_digest(cid)
    assert len(digest) == 32
    assert raw_cid_from_digest(digest) == cid
    with pytest.raises(InvalidCIDError, match="raw"):
        raw_cid_digest(vectors["files"]["b_1MiB.bin"]["v1"])  # dag-pb root of a multi-block file
    with pytest.raises(InvalidCIDError, match="raw"):
        raw_cid_digest(vectors["files"]["hello.txt"]["v0"])
    with pytest.raises(InvalidCIDError, match="32 bytes"):
        raw_cid_from_digest(b"short")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ContentReadError, match="does not exist"):
        cid_for_file(tmp_path / "nope.png")
    with pytest.raises(ContentReadError, match="does not exist"):
        cid_for_directory(tmp_path / "nope")
    (tmp_path / "file.txt").write_bytes(b"x")
    with pytest.raises(ContentReadError, match="not a folder"):
        cid_for_directory(tmp_path / "file.txt")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metadata", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_cid_command_prints_kubo_cids_for_files_and_folders(vectors, vector_data):
    assert run_cli("cid", str(vector_data / "c_5MiB.bin")).stdout.strip() == vectors["files"]["c_5MiB.bin"]["v1"]
    assert run_cli("cid", "--v0", str(vector_data / "hello.txt")).stdout.strip() == vectors["files"]["hello.txt"]["v0"]
    dir3 = next(v for k, v in vectors["directories"].items() if k.startswith("dir3 ("))
    assert run_cli("cid", str(vector_data / "dir3")).stdout.strip() == dir3["v1"]


def test_cid_command_reports_a_missing_path(tmp_path):
    done = run_cli("cid", str(tmp_path / "missing.png"))
    assert done.returncode == 1
    assert "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
