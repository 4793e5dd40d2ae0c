"""Content identifiers, computed locally exactly as kubo's `ipfs add` computes them.

`cid_for_file(path)` gives what `ipfs add --cid-version=1 --only-hash` prints (`--v0`: plain
`ipfs add`), so an artist can check content before and after pinning, and the studio can refuse a
pinning service that returns anything else. The DAG itself is built in `metadata.unixfs`.

The contract stores only the 32-byte sha2-256 digest of a token's metadata CID (a single raw block,
`bafkrei...`): `raw_cid_digest` and `raw_cid_from_digest` convert between the two.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from metadata import unixfs
from metadata.errors import ContentReadError, InvalidCIDError

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: index for index, char in enumerate(_B58_ALPHABET)}

CODEC_NAMES = {unixfs.CODEC_RAW: "raw", unixfs.CODEC_DAG_PB: "dag-pb", 0x71: "dag-cbor", 0x0129: "dag-json"}


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    leading = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise InvalidCIDError(f"{char!r} is not a base58btc character")
        number = number * 58 + _B58_INDEX[char]
    leading = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * leading + body


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except ValueError as exc:
        raise InvalidCIDError(f"not valid base32: {exc}") from exc


@dataclass(frozen=True)
class ParsedCID:
    """A decoded CID. Only sha2-256 multihashes are accepted (all that kubo makes by default)."""

    version: int
    codec: int
    digest: bytes

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES.get(self.codec, hex(self.codec))

    @property
    def multihash(self) -> bytes:
        return unixfs.PREFIX_V0 + self.digest

    def to_bytes(self) -> bytes:
        """The binary CID, as dag-pb links hold it."""
        if self.version == 0:
            return self.multihash
        return unixfs.encode_varint(1) + unixfs.encode_varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return _b58encode(self.multihash)
        return "b" + _b32encode(self.to_bytes())


def _parse_binary(data: bytes, text: str) -> ParsedCID:
    if len(data) == 34 and data[:2] == unixfs.PREFIX_V0:
        return ParsedCID(0, unixfs.CODEC_DAG_PB, data[2:])
    try:
        version, pos = unixfs.decode_varint(data, 0)
        codec, pos = unixfs.decode_varint(data, pos)
        hash_code, pos = unixfs.decode_varint(data, pos)
        length, pos = unixfs.decode_varint(data, pos)
    except ValueError as exc:
        raise InvalidCIDError(f"{text!r} is not a CID: its bytes are truncated") from exc
    if version != 1:
        raise InvalidCIDError(f"{text!r} has CID version {version}; only CIDv0 (Qm...) and CIDv1 exist")
    if hash_code != unixfs.SHA2_256 or length != 32:
        raise InvalidCIDError(
            f"{text!r} uses multihash 0x{hash_code:x} of {length} bytes; only sha2-256 CIDs are supported "
            "(what `ipfs add` makes by default)"
        )
    digest = data[pos:]
    if len(digest) != 32:
        raise InvalidCIDError(f"{text!r} is not a CID: its digest has {len(digest)} bytes instead of 32")
    return ParsedCID(1, codec, digest)


def parse_cid(text: str) -> ParsedCID:
    """Parse a CID string: CIDv0 (`Qm...`) or CIDv1 in base32 (`b...`), base58btc (`z...`), base16 (`f...`).

    An `ipfs://` prefix is accepted. Raises InvalidCIDError naming what is wrong.
    """
    if not isinstance(text, str):
        raise InvalidCIDError(f"a CID must be a string, not {type(text).__name__}")
    value = text.strip()
    if value.startswith("ipfs://"):
        value = value[len("ipfs://") :].split("/", 1)[0]
    if not value:
        raise InvalidCIDError("empty CID: expected something like bafkrei... or Qm...")
    if len(value) > 200:
        raise InvalidCIDError(f"{value[:40]!r}... is too long to be a CID")
    if value.startswith("Qm"):
        if len(value) != 46:
            raise InvalidCIDError(f"{value!r} looks like a CIDv0 but has {len(value)} characters instead of 46")
        data = _b58decode(value)
    elif value[0] in "bB":
        data = _b32decode(value[1:])
    elif value[0] == "z":
        data = _b58decode(value[1:])
    elif value[0] in "fF":
        try:
            data = bytes.fromhex(value[1:])
        except ValueError as exc:
            raise InvalidCIDError(f"{value!r} is not valid base16") from exc
    else:
        raise InvalidCIDError(
            f"{value!r} is not a CID: expected CIDv1 in base32 (bafy..., bafkrei...) or CIDv0 (Qm...)"
        )
    return _parse_binary(data, value)


def cid_from_bytes(data: bytes) -> str:
    """Format a binary CID (as found in a dag-pb link) as a string."""
    return str(_parse_binary(bytes(data), data.hex()))


def _check_version(version: int) -> None:
    if version not in (0, 1):
        raise ValueError(f"CID version must be 0 or 1, not {version!r}")


def cid_for_bytes(data: bytes, *, version: int = 1) -> str:
    """The CID `ipfs add` gives a file holding exactly `data`."""
    _check_version(version)
    return cid_from_bytes(unixfs.bytes_dag(data, version=version).cid)


def _readable(path: str | os.PathLike[str], *, directory: bool) -> Path:
    target = Path(path)
    if not target.exists():
        raise ContentReadError(f"{target} does not exist: check the path")
    if directory and not target.is_dir():
        raise ContentReadError(f"{target} is not a folder")
    if not directory and not target.is_file():
        raise ContentReadError(f"{target} is not a regular file (for a folder use cid_for_directory)")
    return target


def cid_for_file(path: str | os.PathLike[str], *, version: int = 1) -> str:
    """The CID of a file, streamed in 256 KiB chunks (constant memory, any size)."""
    _check_version(version)
    target = _readable(path, directory=False)
    try:
        return cid_from_bytes(unixfs.file_dag(target, version=version).cid)
    except OSError as exc:
        raise ContentReadError(f"cannot read {target}: {exc.strerror or exc}") from exc


def cid_for_directory(path: str | os.PathLike[str], *, version: int = 1) -> str:
    """The root CID of `ipfs add -r path`: dot files skipped, HAMT-sharded where kubo shards."""
    _check_version(version)
    target = _readable(path, directory=True)
    try:
        return cid_from_bytes(unixfs.tree_dag(target, version=version).cid)
    except OSError as exc:
        raise ContentReadError(f"cannot add {target}: {exc.strerror or exc}") from exc


def cid_for_path(path: str | os.PathLike[str], *, version: int = 1) -> str:
    """`cid_for_file` or `cid_for_directory`, whichever `path` is (the CLI's entry point)."""
    target = Path(path)
    if target.is_dir():
        return cid_for_directory(target, version=version)
    return cid_for_file(target, version=version)


def raw_cid_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest of a CIDv1 raw-codec CID (`bafkrei...`): what the contract stores."""
    parsed = parse_cid(cid)
    if parsed.version != 1 or parsed.codec != unixfs.CODEC_RAW:
        raise InvalidCIDError(
            f"{cid!r} is a CIDv{parsed.version} {parsed.codec_name} CID; the contract stores only CIDv1 raw "
            "CIDs (bafkrei...): token metadata must be a single block of at most 262,144 bytes"
        )
    return parsed.digest


def raw_cid_from_digest(digest: bytes) -> str:
    """The CIDv1 raw CID (`bafkrei...`) of a 32-byte sha2-256 digest read from the contract."""
    if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
        raise InvalidCIDError("a sha2-256 digest is exactly 32 bytes")
    return str(ParsedCID(1, unixfs.CODEC_RAW, bytes(digest)))
