"""UnixFS over dag-pb, built exactly as kubo's `ipfs add` builds it.

Why our own builder rather than a wrapper: the local store needs every block of the DAG (to serve
`/ipfs/<cid>/<path>` and byte ranges), not just the root CID, and the same code that computes the
CID must produce the blocks so the two can never disagree. The parameters are kubo's defaults:

- fixed 262,144-byte chunks; balanced layout with at most 174 links per node;
- CIDv1 (`--cid-version=1`): raw leaves (codec 0x55), dag-pb (0x70) inner nodes;
  CIDv0: every node dag-pb, leaves wrap their chunk in a UnixFS File node;
- directories: a basic UnixFS Directory, switched to a HAMT shard (fanout 256, murmur3-x64-64 name
  hashing) once the estimated size of its links (name length + CID length) exceeds 262,144 bytes.

dag-pb encodes links (field 2) before data (field 1) and always writes a link's Name, even empty.
This module works on binary CIDs; `metadata.cid` formats them as strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_SIZE = 262_144
MAX_LINKS = 174
HAMT_FANOUT = 256
HAMT_HASH_MURMUR3 = 0x22
SHARD_THRESHOLD_BYTES = 262_144

CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
SHA2_256 = 0x12

# Binary CID prefixes: CIDv1 <version><codec><multihash code><digest length>, CIDv0 = bare multihash.
PREFIX_V1_RAW = bytes([0x01, CODEC_RAW, SHA2_256, 0x20])
PREFIX_V1_DAG_PB = bytes([0x01, CODEC_DAG_PB, SHA2_256, 0x20])
PREFIX_V0 = bytes([SHA2_256, 0x20])

# UnixFS Data.Type values.
TYPE_RAW = 0
TYPE_DIRECTORY = 1
TYPE_FILE = 2
TYPE_METADATA = 3
TYPE_SYMLINK = 4
TYPE_HAMT_SHARD = 5

BlockSink = Callable[[bytes, bytes, "bytes | memoryview"], None]
"""Receives every block as it is made: (binary CID, sha2-256 digest, block bytes)."""


# --- protobuf primitives -------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use it."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read one varint at `pos`; return (value, next position). Raises ValueError when truncated."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def _key(field_number: int, wire_type: int) -> bytes:
    return encode_varint((field_number << 3) | wire_type)


def _bytes_field(field_number: int, value: bytes | memoryview) -> bytes:
    return _key(field_number, 2) + encode_varint(len(value)) + bytes(value)


def _varint_field(field_number: int, value: int) -> bytes:
    return _key(field_number, 0) + encode_varint(value)


def _iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = decode_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            yield number, wire, bytes(data[pos : pos + length])
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


# The wire type decides the value's Python type; these narrow it for the field being read.
def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ValueError("expected a varint field")
    return value


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


# --- dag-pb and UnixFS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PBLink:
    """One dag-pb link: the child's binary CID, its name in the parent, its cumulative size."""

    cid: bytes
    name: str
    tsize: int


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


@dataclass(frozen=True)
class UnixFSData:
    type: int
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None


def encode_unixfs(
    kind: int,
    *,
    data: bytes | memoryview | None = None,
    filesize: int | None = None,
    blocksizes: list[int] | tuple[int, ...] = (),
    hash_type: int | None = None,
    fanout: int | None = None,
) -> bytes:
    """UnixFS Data message, fields in number order; `blocksizes` repeated and unpacked as go writes it."""
    out = bytearray(_varint_field(1, kind))
    if data:
        out += _bytes_field(2, data)
    if filesize is not None:
        out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    if hash_type is not None:
        out += _varint_field(5, hash_type)
    if fanout is not None:
        out += _varint_field(6, fanout)
    return bytes(out)


def decode_unixfs(data: bytes) -> UnixFSData:
    """Parse a UnixFS Data message. Raises ValueError on anything malformed."""
    kind: int | None = None
    payload = b""
    filesize = None
    blocksizes: list[int] = []
    hash_type = None
    fanout = None
    for number, wire, value in _iter_fields(data):
        if number == 1 and wire == 0:
            kind = _int(value)
        elif number == 2 and wire == 2:
            payload = _bytes(value)
        elif number == 3 and wire == 0:
            filesize = _int(value)
        elif number == 4 and wire == 0:
            blocksizes.append(_int(value))
        elif number == 4 and wire == 2:  # packed encoding, accepted when reading
            raw = _bytes(value)
            pos = 0
            while pos < len(raw):
                size, pos = decode_varint(raw, pos)
                blocksizes.append(size)
        elif number == 5 and wire == 0:
            hash_type = _int(value)
        elif number == 6 and wire == 0:
            fanout = _int(value)
    if kind is None:
        raise ValueError("UnixFS data without a Type")
    return UnixFSData(kind, payload, filesize, tuple(blocksizes), hash_type, fanout)


def encode_dag_pb(links: list[PBLink] | tuple[PBLink, ...], data: bytes | None) -> bytes:
    """dag-pb node: links first (Hash, Name always written, Tsize), then Data."""
    out = bytearray()
    for link in links:
        body = _bytes_field(1, link.cid) + _bytes_field(2, link.name.encode("utf-8")) + _varint_field(3, link.tsize)
        out += _bytes_field(2, body)
    if data is not None:
        out += _bytes_field(1, data)
    return bytes(out)


def decode_dag_pb(block: bytes | memoryview) -> PBNode:
    """Parse a dag-pb block. Raises ValueError on anything malformed."""
    links: list[PBLink] = []
    data: bytes | None = None
    for number, wire, value in _iter_fields(block):
        if number == 2 and wire == 2:
            cid = b""
            name = ""
            tsize = 0
            for lnum, lwire, lvalue in _iter_fields(_bytes(value)):
                if lnum == 1 and lwire == 2:
                    cid = _bytes(lvalue)
                elif lnum == 2 and lwire == 2:
                    name = _bytes(lvalue).decode("utf-8")
                elif lnum == 3 and lwire == 0:
                    tsize = _int(lvalue)
            if not cid:
                raise ValueError("dag-pb link without a Hash")
            links.append(PBLink(cid, name, tsize))
        elif number == 1 and wire == 2:
            data = _bytes(value)
        else:
            raise ValueError(f"unexpected dag-pb field {number}")
    return PBNode(tuple(links), data)


# --- building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DagLink:
    """What a parent needs to know about a child: binary CID, cumulative size, file bytes covered."""

    cid: bytes
    tsize: int
    filesize: int


def _emit(block: bytes | memoryview, prefix: bytes, sink: BlockSink | None) -> bytes:
    digest = hashlib.sha256(block).digest()
    cid = prefix + digest
    if sink is not None:
        sink(cid, digest, block)
    return cid


def _node_prefix(version: int) -> bytes:
    return PREFIX_V1_DAG_PB if version == 1 else PREFIX_V0


class FileDagBuilder:
    """Streams a file's chunks into kubo's balanced DAG, keeping only one pending list per level.

    Memory is O(depth * 174) links whatever the file size: a level that fills up becomes a node at
    once, which gives exactly the left-full tree kubo's balanced layout produces.
    """

    def __init__(self, *, version: int = 1, sink: BlockSink | None = None) -> None:
        if version not in (0, 1):
            raise ValueError("CID version must be 0 or 1")
        self.version = version
        self.sink = sink
        self._levels: list[list[DagLink]] = [[]]
        self._chunks = 0

    def add_chunk(self, chunk: bytes | memoryview) -> None:
        """Add one chunk (exactly CHUNK_SIZE bytes, except the last)."""
        self._chunks += 1
        size = len(chunk)
        if self.version == 1:
            cid = _emit(chunk, PREFIX_V1_RAW, self.sink)
            link = DagLink(cid, size, size)
        else:
            block = encode_dag_pb((), encode_unixfs(TYPE_FILE, data=chunk, filesize=size))
            cid = _emit(block, PREFIX_V0, self.sink)
            link = DagLink(cid, len(block), size)
        self._push(0, link)

    def _push(self, level: int, link: DagLink) -> None:
        if level == len(self._levels):
            self._levels.append([])
        pending = self._levels[level]
        pending.append(link)
        if len(pending) == MAX_LINKS:
            node = self._make_node(pending)
            self._levels[level] = []
            self._push(level + 1, node)

    def _make_node(self, children: list[DagLink]) -> DagLink:
        filesize = sum(child.filesize for child in children)
        data = encode_unixfs(TYPE_FILE, filesize=filesize, blocksizes=[child.filesize for child in children])
        block = encode_dag_pb([PBLink(child.cid, "", child.tsize) for child in children], data)
        cid = _emit(block, _node_prefix(self.version), self.sink)
        return DagLink(cid, len(block) + sum(child.tsize for child in children), filesize)

    def finish(self) -> DagLink:
        """Close every level bottom-up and return the root."""
        if self._chunks == 0:
            self.add_chunk(b"")
        level = 0
        while True:
            top = max(i for i, links in enumerate(self._levels) if links)
            pending = self._levels[level]
            if level == top and len(pending) == 1:
                return pending[0]
            if pending:
                node = self._make_node(pending)
                self._levels[level] = []
                if level + 1 == len(self._levels):
                    self._levels.append([])
                self._levels[level + 1].append(node)
            level += 1


def file_dag(path: Path, *, version: int = 1, sink: BlockSink | None = None) -> DagLink:
    """Chunk and hash a file, reading it once in CHUNK_SIZE pieces (constant memory)."""
    builder = FileDagBuilder(version=version, sink=sink)
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            filled = 0
            while filled < CHUNK_SIZE:
                read = handle.readinto(view[filled:])
                if not read:
                    break
                filled += read
            if filled == 0:
                break
            # A sink may keep the block: hand it its own copy only when one is attached.
            builder.add_chunk(bytes(view[:filled]) if sink is not None else view[:filled])
            if filled < CHUNK_SIZE:
                break
    return builder.finish()


def bytes_dag(data: bytes | memoryview, *, version: int = 1, sink: BlockSink | None = None) -> DagLink:
    """The DAG of an in-memory byte string, chunked as a file of the same bytes."""
    builder = FileDagBuilder(version=version, sink=sink)
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_SIZE):
        builder.add_chunk(view[start : start + CHUNK_SIZE])
    return builder.finish()


# --- directories ---------------------------------------------------------------------------------


def murmur3_x64_64(data: bytes) -> bytes:
    """First 64 bits of MurmurHash3 x64-128 (seed 0), big-endian: the HAMT key kubo uses for names."""
    mask = (1 << 64) - 1
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & mask

    def fmix(k: int) -> int:
        k ^= k >> 33
        k = (k * 0xFF51AFD7ED558CCD) & mask
        k ^= k >> 33
        k = (k * 0xC4CEB9FE1A85EC53) & mask
        k ^= k >> 33
        return k

    length = len(data)
    h1 = h2 = 0
    nblocks = length // 16
    for i in range(nblocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        k1 = rotl((k1 * c1) & mask, 31)
        h1 ^= (k1 * c2) & mask
        h1 = (rotl(h1, 27) + h2) & mask
        h1 = (h1 * 5 + 0x52DCE729) & mask
        k2 = rotl((k2 * c2) & mask, 33)
        h2 ^= (k2 * c1) & mask
        h2 = (rotl(h2, 31) + h1) & mask
        h2 = (h2 * 5 + 0x38495AB5) & mask
    tail = data[nblocks * 16 :]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        h2 ^= (rotl((k2 * c2) & mask, 33) * c1) & mask
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        h1 ^= (rotl((k1 * c1) & mask, 31) * c2) & mask
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & mask
    h2 = (h2 + h1) & mask
    h1 = fmix(h1)
    h2 = fmix(h2)
    h1 = (h1 + h2) & mask
    return h1.to_bytes(8, "big")


@dataclass
class _Shard:
    slots: dict[int, tuple[str, DagLink] | _Shard] = field(default_factory=dict)


def _shard_insert(shard: _Shard, name: str, key: bytes, link: DagLink, depth: int, keys: dict[str, bytes]) -> None:
    if depth >= len(key):
        raise ValueError(f"HAMT hash collision on the full 64 bits for {name!r}: rename the file")
    index = key[depth]
    existing = shard.slots.get(index)
    if existing is None:
        shard.slots[index] = (name, link)
    elif isinstance(existing, _Shard):
        _shard_insert(existing, name, key, link, depth + 1, keys)
    else:
        child = _Shard()
        other_name, other_link = existing
        _shard_insert(child, other_name, keys[other_name], other_link, depth + 1, keys)
        _shard_insert(child, name, key, link, depth + 1, keys)
        shard.slots[index] = child


def _bitfield(indexes: list[int]) -> bytes:
    value = 0
    for index in indexes:
        value |= 1 << index
    # Big-endian with leading zero bytes dropped, as go's big.Int-compatible bitfield writes it.
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _shard_node(shard: _Shard, version: int, sink: BlockSink | None) -> DagLink:
    links: list[PBLink] = []
    total = 0
    indexes = sorted(shard.slots)
    for index in indexes:
        slot = shard.slots[index]
        label = f"{index:02X}"
        if isinstance(slot, _Shard):
            child = _shard_node(slot, version, sink)
            links.append(PBLink(child.cid, label, child.tsize))
            total += child.tsize
        else:
            name, link = slot
            links.append(PBLink(link.cid, label + name, link.tsize))
            total += link.tsize
    data = encode_unixfs(TYPE_HAMT_SHARD, data=_bitfield(indexes), hash_type=HAMT_HASH_MURMUR3, fanout=HAMT_FANOUT)
    block = encode_dag_pb(links, data)
    cid = _emit(block, _node_prefix(version), sink)
    return DagLink(cid, len(block) + total, 0)


def directory_dag(entries: dict[str, DagLink], *, version: int = 1, sink: BlockSink | None = None) -> DagLink:
    """A UnixFS directory of `entries` (name -> child): basic, or a HAMT shard once kubo would shard."""
    estimated = sum(len(name.encode("utf-8")) + len(link.cid) for name, link in entries.items())
    if estimated > SHARD_THRESHOLD_BYTES:
        root = _Shard()
        keys = {name: murmur3_x64_64(name.encode("utf-8")) for name in entries}
        for name, link in entries.items():
            _shard_insert(root, name, keys[name], link, 0, keys)
        return _shard_node(root, version, sink)
    ordered = sorted(entries.items(), key=lambda item: item[0].encode("utf-8"))
    links = [PBLink(link.cid, name, link.tsize) for name, link in ordered]
    block = encode_dag_pb(links, encode_unixfs(TYPE_DIRECTORY))
    cid = _emit(block, _node_prefix(version), sink)
    return DagLink(cid, len(block) + sum(link.tsize for link in links), 0)


FileHook = Callable[[Path], None]


def tree_dag(
    path: Path,
    *,
    version: int = 1,
    sink: BlockSink | None = None,
    check_file: FileHook | None = None,
) -> DagLink:
    """A folder as `ipfs add -r` adds it: hidden entries (dot names) skipped, symlinks refused.

    `check_file` is called on every file before it is read (the store uses it for the size limit).
    """
    entries: dict[str, DagLink] = {}
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_symlink():
            raise OSError(f"{child} is a symbolic link; copy the file it points to into the folder instead")
        if child.is_dir():
            entries[child.name] = tree_dag(child, version=version, sink=sink, check_file=check_file)
        elif child.is_file():
            if check_file is not None:
                check_file(child)
            entries[child.name] = file_dag(child, version=version, sink=sink)
        else:
            raise OSError(f"{child} is not a regular file or folder (device, socket or pipe)")
    return directory_dag(entries, version=version, sink=sink)
