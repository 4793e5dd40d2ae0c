"""The embedded IPFS block store: content-addressed, verified on every read, crash-safe writes.

Each block lives in `<root>/blocks/<2 hex>/<sha2-256 hex>` (keyed by its multihash, so a block is
stored once whatever CID refers to it). Every read hashes the block again and compares it with the
digest it was asked for: a block damaged on disk raises CorruptBlockError and its bytes are never
returned. Blocks are written to a temporary file and renamed into place, so a crash leaves either
the whole block or none; adding the same content again is a no-op that also repairs damaged blocks.

Durable before reported: each block file is fsynced before its rename, and every folder that gained an
entry (the block's shard folder, and `blocks/` for a new shard) is fsynced once the whole DAG is in
place and before `add_*` returns its CID. So a CID the studio has recorded (or written on chain) never
points at blocks a power cut could take back, as the database and the chain checkpoint already promise.

The DAG is built by `metadata.unixfs`, the same code that computes CIDs, so `add_file(p)` always
returns `metadata.cid.cid_for_file(p)`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from metadata import unixfs
from metadata.cid import ParsedCID, cid_from_bytes, parse_cid
from metadata.errors import (
    BlockNotFoundError,
    ContentPathError,
    ContentReadError,
    ContentTooLargeError,
    CorruptBlockError,
)
from metadata.ipfs_path import decode_node, resolve_path

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024

Kind = Literal["file", "directory"]


@dataclass(frozen=True)
class ContentStat:
    """What a CID (or a path inside one) is: a file of `size` bytes or a directory."""

    cid: str
    kind: Kind
    size: int


@dataclass(frozen=True)
class DirectoryEntry:
    name: str
    cid: str
    kind: Kind
    size: int


class ContentReader:
    """A file inside the store, read lazily: `size` is known at once, bytes come block by block.

    Every block is verified as it is read, so iterating raises CorruptBlockError before any
    damaged byte is produced.
    """

    def __init__(self, store: LocalStore, cid: bytes, size: int, name: str) -> None:
        self._store = store
        self._cid = cid
        self.size = size
        self.name = name
        self.cid = cid_from_bytes(cid)

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes in [start, end) (end defaults to the file size), in block-sized pieces."""
        stop = self.size if end is None else min(end, self.size)
        if start >= stop:
            return
        yield from self._store._iter_file(self._cid, start, stop)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_bytes(start, end))


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes the names in it durable)."""
    if sys.platform.startswith("win"):
        return  # no folder fsync there; NTFS journals its metadata
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, kw_only=True)
class StoreOptions:
    """Where the local store lives and the largest file it takes (the studio builds them from its
    settings: studio.services.options.store_options)."""

    root: Path
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


class LocalStore:
    """Content-addressed block store under `root`; see the module docstring for its guarantees."""

    def __init__(self, root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        if max_file_bytes <= 0:
            raise ValueError("max_file_bytes must be positive")
        self.root = Path(root)
        self.max_file_bytes = max_file_bytes
        self._blocks = self.root / "blocks"
        self._blocks.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_options(cls, options: StoreOptions) -> LocalStore:
        """The store `options` describe."""
        return cls(options.root, max_file_bytes=options.max_file_bytes)

    # --- blocks ----------------------------------------------------------------------------------

    def _block_path(self, digest: bytes) -> Path:
        hexdigest = digest.hex()
        return self._blocks / hexdigest[:2] / hexdigest

    def _put_block(self, digest: bytes, block: bytes | memoryview, dirty: set[Path]) -> None:
        """Write one block durably; the folders whose entries changed are added to `dirty` for _sync."""
        path = self._block_path(digest)
        if path.exists():
            try:
                if path.read_bytes() == block:
                    # Possibly renamed into place by a process that stopped before its fsyncs: sync it now.
                    _fsync_path(path)
                    dirty.add(path.parent)
                    return
            except OSError:
                pass  # unreadable: rewrite it below
        if not path.parent.is_dir():
            path.parent.mkdir(exist_ok=True)
            dirty.add(self._blocks)  # the new shard folder's own entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(block)
                handle.flush()
                os.fsync(handle.fileno())  # the bytes first, or the rename could survive a power cut without them
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dirty.add(path.parent)

    def _adding(self) -> tuple[unixfs.BlockSink, set[Path]]:
        """A block sink for one add and the set of folders it dirtied (to `_sync` before returning)."""
        dirty: set[Path] = set()

        def sink(_cid: bytes, digest: bytes, block: bytes | memoryview) -> None:
            self._put_block(digest, block, dirty)

        return sink, dirty

    @staticmethod
    def _sync(dirty: set[Path]) -> None:
        """fsync each folder that gained an entry: only then does a rename survive a power cut."""
        for folder in sorted(dirty, key=lambda p: len(p.parts), reverse=True):  # shard folders, then blocks/
            _fsync_path(folder)

    def get_block(self, cid: bytes | str) -> bytes:
        """A block's bytes, verified against its digest. Raises BlockNotFoundError or CorruptBlockError."""
        parsed = parse_cid(cid) if isinstance(cid, str) else parse_cid(cid_from_bytes(cid))
        path = self._block_path(parsed.digest)
        try:
            block = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError(
                f"block {parsed} is not in the local store ({self.root}): add or pin the content first"
            ) from None
        except OSError as exc:
            raise CorruptBlockError(f"block {parsed} cannot be read from {path}: {exc.strerror}") from exc
        if hashlib.sha256(block).digest() != parsed.digest:
            raise CorruptBlockError(
                f"block {parsed} at {path} is corrupted (its bytes no longer match its hash); it will not be "
                "served. Re-add the original content to repair it, or restore the store from a backup."
            )
        return block

    def has(self, cid: str) -> bool:
        """Whether the root block of `cid` is stored (a malformed CID is simply not stored)."""
        try:
            parsed = parse_cid(cid)
        except ValueError:
            return False
        return self._block_path(parsed.digest).is_file()

    # --- adding ----------------------------------------------------------------------------------

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_file_bytes:
            raise ContentTooLargeError(
                f"{what} is {size:,} bytes, over the limit of {self.max_file_bytes:,} bytes: "
                "make it smaller or raise ipfs.max_file_mb (STUDIO_IPFS__MAX_FILE_MB)"
            )

    def add_bytes(self, data: bytes, *, name: str | None = None) -> str:
        """Store `data` as a file and return its CIDv1 (`name` only labels errors)."""
        self._check_size(len(data), name or "the content")
        sink, dirty = self._adding()
        cid = cid_from_bytes(unixfs.bytes_dag(data, version=1, sink=sink).cid)
        self._sync(dirty)
        return cid

    def add_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file (streamed, constant memory) and return its CIDv1, as `ipfs add --cid-version=1`."""
        target = Path(path)
        if not target.is_file():
            raise ContentReadError(f"{target} does not exist or is not a regular file: check the path")
        try:
            self._check_size(target.stat().st_size, str(target))
            sink, dirty = self._adding()
            cid = cid_from_bytes(unixfs.file_dag(target, version=1, sink=sink).cid)
            self._sync(dirty)
            return cid
        except OSError as exc:
            raise ContentReadError(f"cannot read {target}: {exc.strerror or exc}") from exc

    def add_directory(self, path: str | os.PathLike[str]) -> str:
        """Store a folder as `ipfs add -r --cid-version=1` does (dot files skipped) and return its CID."""
        target = Path(path)
        if not target.is_dir():
            raise ContentReadError(f"{target} does not exist or is not a folder: check the path")

        def check(file: Path) -> None:
            self._check_size(file.stat().st_size, str(file))

        try:
            sink, dirty = self._adding()
            cid = cid_from_bytes(unixfs.tree_dag(target, version=1, sink=sink, check_file=check).cid)
            self._sync(dirty)
            return cid
        except OSError as exc:
            raise ContentReadError(f"cannot add {target}: {exc.strerror or exc}") from exc

    # --- reading ---------------------------------------------------------------------------------

    def _node(self, cid: bytes) -> tuple[ParsedCID, bytes, unixfs.PBNode | None, unixfs.UnixFSData | None]:
        node = decode_node(cid, self.get_block(cid))
        return node.cid, node.block, node.node, node.fs

    @staticmethod
    def _kind(fs: unixfs.UnixFSData | None) -> Kind:
        if fs is None or fs.type in (unixfs.TYPE_FILE, unixfs.TYPE_RAW):
            return "file"
        if fs.type in (unixfs.TYPE_DIRECTORY, unixfs.TYPE_HAMT_SHARD):
            return "directory"
        raise ContentPathError(f"UnixFS type {fs.type} (symlink or metadata) is not served")

    @staticmethod
    def _file_size(block: bytes, fs: unixfs.UnixFSData | None) -> int:
        if fs is None:
            return len(block)
        if fs.filesize is not None:
            return fs.filesize
        return len(fs.data) + sum(fs.blocksizes)

    def resolve(self, cid: str, path: str = "") -> bytes:
        """The binary CID that `cid/path` names. Raises ContentPathError for a missing entry."""
        return resolve_path(self.get_block, cid, path)

    def stat(self, cid: str, path: str = "") -> ContentStat:
        """Kind and size of `cid/path` (for a directory, size is the sum of its entries' block sizes)."""
        target = self.resolve(cid, path)
        _parsed, block, node, fs = self._node(target)
        kind = self._kind(fs)
        if kind == "file":
            size = self._file_size(block, fs)
        else:
            size = len(block) + sum(link.tsize for link in node.links) if node else len(block)
        return ContentStat(cid_from_bytes(target), kind, size)

    def _iter_entries(self, node: unixfs.PBNode, fs: unixfs.UnixFSData) -> Iterator[tuple[str, bytes]]:
        if fs.type == unixfs.TYPE_DIRECTORY:
            for link in node.links:
                yield link.name, link.cid
            return
        for link in node.links:
            if len(link.name) == 2:
                _parsed, _block, child, child_fs = self._node(link.cid)
                if child is None or child_fs is None:
                    raise CorruptBlockError(f"HAMT shard {cid_from_bytes(link.cid)} is malformed")
                yield from self._iter_entries(child, child_fs)
            else:
                yield link.name[2:], link.cid

    def ls(self, cid: str, path: str = "") -> list[DirectoryEntry]:
        """The entries of a directory (basic or HAMT-sharded), sorted by name."""
        target = self.resolve(cid, path)
        _parsed, _block, node, fs = self._node(target)
        if node is None or fs is None or self._kind(fs) != "directory":
            raise ContentPathError(f"{cid}/{path} is a file, not a directory")
        entries = []
        for name, child in self._iter_entries(node, fs):
            _p, block, child_node, child_fs = self._node(child)
            kind = self._kind(child_fs)
            if kind == "file":
                size = self._file_size(block, child_fs)
            else:
                size = len(block) + sum(link.tsize for link in child_node.links) if child_node else len(block)
            entries.append(DirectoryEntry(name, cid_from_bytes(child), kind, size))
        entries.sort(key=lambda entry: entry.name)
        return entries

    def open(self, cid: str, path: str = "") -> ContentReader:
        """A lazy, verified reader of the file at `cid/path` (the gateway streams from it)."""
        target = self.resolve(cid, path)
        _parsed, block, _node, fs = self._node(target)
        if self._kind(fs) != "file":
            raise ContentPathError(f"{cid}/{path} is a directory, not a file".replace("/ ", " "))
        name = [part for part in path.split("/") if part][-1] if path.strip("/") else ""
        return ContentReader(self, target, self._file_size(block, fs), name)

    def cat(self, cid: str, path: str = "") -> bytes:
        """The whole file at `cid/path`, verified block by block."""
        return self.open(cid, path).read()

    def _iter_file(self, cid: bytes, start: int, end: int) -> Iterator[bytes]:
        _parsed, block, node, fs = self._node(cid)
        if node is None or fs is None:
            yield block[start:end]
            return
        if fs.type not in (unixfs.TYPE_FILE, unixfs.TYPE_RAW):
            raise CorruptBlockError(f"{cid_from_bytes(cid)} was expected to be part of a file")
        offset = 0
        if fs.data:
            if start < len(fs.data):
                yield fs.data[start : min(end, len(fs.data))]
            offset = len(fs.data)
        if len(fs.blocksizes) != len(node.links):
            raise CorruptBlockError(f"file node {cid_from_bytes(cid)} has blocksizes that do not match its links")
        for link, size in zip(node.links, fs.blocksizes, strict=True):
            child_start, child_end = offset, offset + size
            if child_end > start and child_start < end:
                yield from self._iter_file(link.cid, max(start - child_start, 0), min(end, child_end) - child_start)
            offset = child_end
            if offset >= end:
                break
