"""The CID shapes the contract stores: a token's metadata as CIDv1, raw codec (0x55), sha2-256, base32 lower
(`bafkrei...`), and a drop's metadata folder as CIDv1, dag-pb codec (0x70), sha2-256 (`bafybei...`).

Kept inside contracts/ on purpose (contracts/ imports nothing of the studio); metadata/cid.py is the
studio's general CID module and agrees with this one on these CIDs.
"""

from __future__ import annotations

import base64
import hashlib

from contracts.errors import UnstorableCIDError

_RAW_SHA256_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])
_DAG_PB_SHA256_PREFIX = bytes([0x01, 0x70, 0x12, 0x20])


def raw_cid_from_digest(digest: bytes) -> str:
    """`bafkrei...` for a 32-byte sha2-256 digest: base32 of 0x01 0x55 0x12 0x20 || digest."""
    if len(digest) != 32:
        raise UnstorableCIDError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    encoded = base64.b32encode(_RAW_SHA256_PREFIX + digest).decode("ascii").lower().rstrip("=")
    return "b" + encoded


def raw_cid_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest inside a `bafkrei...` CID (also accepts an `ipfs://` prefix)."""
    text = cid.strip()
    if text.startswith("ipfs://"):
        text = text[len("ipfs://") :]
    if not text.startswith("b"):
        raise UnstorableCIDError(
            f"{cid!r} is not a base32 CIDv1: the contract stores CIDv1 raw sha2-256 CIDs (bafkrei...); "
            "pin the metadata JSON as a single raw block with CID version 1."
        )
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise UnstorableCIDError(f"{cid!r} is not valid base32: {exc}") from None
    if len(raw) != 36 or raw[:4] != _RAW_SHA256_PREFIX:
        raise UnstorableCIDError(
            f"{cid!r} is not a CIDv1 with raw codec and sha2-256 (bafkrei...): the contract stores only those. "
            "Build the metadata JSON as one raw block (at most 256 KiB) and pin it with CID version 1."
        )
    return raw[4:]


def raw_cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256) of bytes stored as a single raw block."""
    return raw_cid_from_digest(hashlib.sha256(data).digest())


def folder_cid_from_digest(digest: bytes) -> str:
    """`bafybei...` for a 32-byte sha2-256 digest: base32 of 0x01 0x70 0x12 0x20 || digest (a dag-pb folder)."""
    if len(digest) != 32:
        raise UnstorableCIDError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return "b" + base64.b32encode(_DAG_PB_SHA256_PREFIX + digest).decode("ascii").lower().rstrip("=")


def folder_cid_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest inside a folder's `bafybei...` CID (also accepts an `ipfs://` prefix).

    A drop's folder must be a CIDv1 with the dag-pb codec and sha2-256 (what `ipfs add -r --cid-version=1`
    gives a folder): the contract renders exactly that prefix in front of the digest."""
    text = str(cid).strip()
    if text.startswith("ipfs://"):
        text = text[len("ipfs://") :]
    body = text[1:].upper() if text.startswith("b") else ""
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8)) if body else b""
    except ValueError:
        raw = b""
    if len(raw) != 36 or raw[:4] != _DAG_PB_SHA256_PREFIX:
        raise UnstorableCIDError(
            f"{cid!r} is not a folder CIDv1 with the dag-pb codec and sha2-256 (bafybei...): a drop's metadata "
            "folder is addressed by exactly that CID. Add the folder with CID version 1 (ipfs add -r "
            "--cid-version=1, or LocalStore.add_directory) and pass the CID of the folder itself."
        )
    return raw[4:]
