"""Resolving `CID/path` over UnixFS blocks, wherever the blocks come from.

The local store reads its blocks from disk; the gallery and the verifier read another network's from a
public gateway that is not trusted. Both walk a path the same way: decode the directory's dag-pb node,
find the entry (a basic directory's link, or a HAMT shard's murmur3 bucket), go down. The caller's
`get_block` must return only bytes it has checked against the block's CID, so a path resolved here is
as trustworthy as its root CID: a hostile gateway can refuse to answer, never answer with other content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metadata import unixfs
from metadata.cid import ParsedCID, cid_from_bytes, parse_cid
from metadata.errors import ContentPathError, CorruptBlockError

MAX_PATH_DEPTH = 64
# A HAMT lookup goes one level per byte of the 8-byte murmur3 key.
_MAX_SHARD_DEPTH = 8

BlockGetter = Callable[[bytes], bytes]
"""Returns the block of a binary CID, already verified against its digest."""


@dataclass(frozen=True)
class Node:
    """A decoded block: a raw leaf (`node` and `fs` None) or a dag-pb node with its UnixFS data."""

    cid: ParsedCID
    block: bytes
    node: unixfs.PBNode | None
    fs: unixfs.UnixFSData | None

    @property
    def is_directory(self) -> bool:
        return self.fs is not None and self.fs.type in (unixfs.TYPE_DIRECTORY, unixfs.TYPE_HAMT_SHARD)


def decode_node(cid: bytes, block: bytes) -> Node:
    """The node of a verified block. Raises ContentPathError for a codec that is not UnixFS and
    CorruptBlockError for a dag-pb block that does not decode."""
    parsed = parse_cid(cid_from_bytes(cid))
    if parsed.codec == unixfs.CODEC_RAW:
        return Node(parsed, block, None, None)
    if parsed.codec != unixfs.CODEC_DAG_PB:
        raise ContentPathError(f"{parsed} is a {parsed.codec_name} block; only UnixFS content can be read")
    try:
        node = unixfs.decode_dag_pb(block)
        if node.data is None:
            raise ValueError("dag-pb node without UnixFS data")
        return Node(parsed, block, node, unixfs.decode_unixfs(node.data))
    except ValueError as exc:
        raise CorruptBlockError(f"block {parsed} is not valid UnixFS ({exc})") from exc


def lookup(get_block: BlockGetter, directory: Node, name: str) -> bytes | None:
    """The binary CID of entry `name` of a directory node (basic or HAMT shard), or None."""
    if directory.node is None or directory.fs is None:
        raise ContentPathError(f"{directory.cid} is a file, not a directory")
    if directory.fs.type == unixfs.TYPE_DIRECTORY:
        for link in directory.node.links:
            if link.name == name:
                return link.cid
        return None
    # HAMT shard: follow the murmur3 key one byte per level.
    key = unixfs.murmur3_x64_64(name.encode("utf-8"))
    node = directory.node
    for depth in range(_MAX_SHARD_DEPTH):
        label = f"{key[depth]:02X}"
        for link in node.links:
            if link.name == label + name:
                return link.cid
            if link.name == label:
                child = decode_node(link.cid, get_block(link.cid))
                if child.node is None or child.fs is None or child.fs.type != unixfs.TYPE_HAMT_SHARD:
                    raise CorruptBlockError(f"HAMT shard {cid_from_bytes(link.cid)} is malformed")
                node = child.node
                break
        else:
            return None
    return None


def resolve_path(get_block: BlockGetter, cid: str, path: str = "") -> bytes:
    """The binary CID that `cid/path` names. Raises ContentPathError for a missing entry, a path through
    a file, `.`/`..`, or a path deeper than MAX_PATH_DEPTH."""
    current = parse_cid(cid).to_bytes()
    parts = [part for part in path.split("/") if part]
    if len(parts) > MAX_PATH_DEPTH:
        raise ContentPathError(f"path {path!r} is deeper than {MAX_PATH_DEPTH} levels")
    walked: list[str] = []
    for part in parts:
        if part in (".", ".."):
            raise ContentPathError(f"path {path!r} contains {part!r}: IPFS paths only go down")
        node = decode_node(current, get_block(current))
        if not node.is_directory:
            raise ContentPathError(f"{cid}/{'/'.join(walked)} is a file, so {part!r} cannot be inside it")
        child = lookup(get_block, node, part)
        if child is None:
            raise ContentPathError(f"{cid}/{'/'.join([*walked, part])} does not exist")
        current = child
        walked.append(part)
    return current
