"""The pinning interface every backend implements, and what a pin returns."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from metadata.errors import CIDMismatchError


@dataclass(frozen=True)
class PinResult:
    """One backend's answer: the CID it pinned, its name for the backend, the bytes it counted."""

    cid: str
    backend: str
    size: int
    name: str


@dataclass(frozen=True)
class BackendHealth:
    """Whether a backend can take pins right now, and why not."""

    backend: str
    ok: bool
    detail: str


class PinningBackend(ABC):
    """A place content is pinned. Every method raises a PinningError subclass, never returns an error.

    `expected_cid`, when given, is the CID computed locally: a backend that can check before it
    commits a pin does so (Kubo), the others check the CID they were given back; either way a
    mismatch raises CIDMismatchError.
    """

    name: str

    @abstractmethod
    def pin_bytes(self, data: bytes, *, name: str, expected_cid: str | None = None) -> PinResult: ...

    @abstractmethod
    def pin_file(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult: ...

    @abstractmethod
    def pin_directory(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult: ...

    @abstractmethod
    def health(self) -> BackendHealth: ...

    def _check(self, returned: str, expected: str | None, what: str) -> None:
        if expected is not None and returned != expected:
            raise CIDMismatchError(
                f"{self.name} returned CID {returned} for {what}, but the studio computed {expected}. The content "
                f"is not used: check that {self.name} adds with CIDv1, raw leaves and 256 KiB chunks (kubo's "
                "defaults for --cid-version=1)."
            )
