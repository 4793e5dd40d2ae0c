"""Pinning into the embedded local store (the default backend)."""

from __future__ import annotations

import os
from pathlib import Path

from metadata.errors import ContentError, PinningError
from metadata.pinning.base import BackendHealth, PinningBackend, PinResult
from metadata.store import LocalStore


class LocalPinning(PinningBackend):
    """Pins are blocks in the studio's own store, served by its `/ipfs/` gateway."""

    name = "local"

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def pin_bytes(self, data: bytes, *, name: str, expected_cid: str | None = None) -> PinResult:
        cid = self.store.add_bytes(data, name=name)
        self._check(cid, expected_cid, name)
        return PinResult(cid, self.name, len(data), name)

    def pin_file(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        target = Path(path)
        cid = self.store.add_file(target)
        self._check(cid, expected_cid, str(target))
        return PinResult(cid, self.name, target.stat().st_size, target.name)

    def pin_directory(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        target = Path(path)
        cid = self.store.add_directory(target)
        self._check(cid, expected_cid, str(target))
        return PinResult(cid, self.name, self.store.stat(cid).size, target.name)

    def health(self) -> BackendHealth:
        try:
            probe = self.store.add_bytes(b"", name="health probe")
            self.store.cat(probe)
        except (ContentError, PinningError, OSError) as exc:
            return BackendHealth(self.name, False, f"local store at {self.store.root} is not usable: {exc}")
        return BackendHealth(self.name, True, f"local store at {self.store.root}")
