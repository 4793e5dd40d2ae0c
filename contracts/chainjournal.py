"""The embedded chain's journal: the blocks mined since the last full state dump, appended as they are
confirmed and replayed on start on top of that dump.

Why: a full `anvil_dumpState` after every transaction costs time in proportion to the whole chain's
state (84 ms per batch at first, 163 ms at 2 MB), so every transaction got slower as the collection
grew. Appending a block is one short line and one fsync, whatever the chain's size. The full dump
is still written, but only when the journal has grown as large as the dump itself (so its cost,
spread over the blocks that grew the journal, stays constant per block), on a clean stop and
after a replay.

One line per block: its number, timestamp and raw signed transactions, in order (JSON). A replay
mines each block again with the same transactions at the same timestamp, so transaction hashes,
block numbers and timestamps are what they were. A torn last line (a crash while appending, before
the fsync returned, so before anything was reported confirmed) is dropped; a damaged line before
the last is an error that names the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import LocalChainError


@dataclass(frozen=True)
class JournalBlock:
    number: int
    timestamp: int
    transactions: tuple[str, ...]  # raw signed transactions, 0x-hex, in block order

    def to_line(self) -> bytes:
        entry = {"block": self.number, "timestamp": self.timestamp, "txs": list(self.transactions)}
        return (json.dumps(entry, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_json(cls, entry: Any) -> JournalBlock:
        if not isinstance(entry, dict):
            raise ValueError("not an object")
        number, timestamp, txs = entry["block"], entry["timestamp"], entry["txs"]
        if not isinstance(number, int) or not isinstance(timestamp, int) or not isinstance(txs, list):
            raise ValueError("wrong field types")
        if not all(isinstance(tx, str) and tx.startswith("0x") for tx in txs):
            raise ValueError("a transaction is not 0x-hex")
        return cls(number, timestamp, tuple(txs))


class ChainJournal:
    """The append-only journal file next to the state dump."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self) -> list[JournalBlock]:
        """The journaled blocks in order (a torn last line dropped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        blocks = []
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                blocks.append(JournalBlock.from_json(json.loads(line)))
            except (ValueError, KeyError) as exc:
                if index == len(lines) - 1:
                    break  # torn by a crash while appending: never reported confirmed
                raise LocalChainError(
                    f"the chain journal {self.path} is damaged at line {index + 1} ({exc}): move it away to "
                    "start from the last full state dump (the blocks it held are then lost)."
                ) from None
        return blocks

    def append(self, blocks: list[JournalBlock]) -> None:
        """Append `blocks` and fsync: once this returns they survive a crash or a power cut."""
        if not blocks:
            return
        created = not self.path.exists()
        with open(self.path, "ab") as handle:
            handle.write(b"".join(block.to_line() for block in blocks))
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_dir(self.path.parent)

    def clear(self) -> None:
        """Empty the journal (after a full dump holds everything it had)."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as handle:
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
