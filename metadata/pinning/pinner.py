"""Pin to every configured backend, trusting none of them: each returned CID must equal ours.

The CID is computed locally first (`metadata.cid`); each backend gets it as `expected_cid` and its
answer is compared again here. Any error stops the pin and is raised: the caller records nothing
(a token never points at content that was not pinned everywhere it was meant to be).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from metadata.cid import cid_for_bytes, cid_for_directory, cid_for_file
from metadata.errors import CIDMismatchError, ContentReadError, ContentTooLargeError, PinningAuthError, PinningError
from metadata.pinning.base import BackendHealth, PinningBackend, PinResult
from metadata.pinning.http import RetryPolicy
from metadata.pinning.kubo import KuboPinning
from metadata.pinning.local import LocalPinning
from metadata.pinning.pinata import FIX_AUTH, PinataPinning
from metadata.store import DEFAULT_MAX_FILE_BYTES, LocalStore


@dataclass(frozen=True, kw_only=True)
class PinnerOptions:
    """Which pinning backends to use, in order ('local', 'pinata', 'kubo'), and how to reach them (the
    studio builds them from its settings: studio.services.options.pinner_options)."""

    backends: tuple[str, ...]
    max_file_bytes: int
    connect_timeout_s: float
    read_timeout_s: float
    retries: int
    pinata_jwt: str | None = field(repr=False)  # a secret: never in a repr, a log line or an error
    pinata_api_url: str
    pinata_files_api_url: str
    kubo_api_url: str


@dataclass(frozen=True)
class PinnedContent:
    """Content pinned on every backend: its CID (equal everywhere) and each backend's answer."""

    cid: str
    size: int
    name: str
    results: tuple[PinResult, ...]


class Pinner:
    """Pins to all `backends` in order; see the module docstring."""

    def __init__(self, backends: list[PinningBackend], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        if not backends:
            raise PinningError("no pinning backend configured: set ipfs.backends (e.g. ['local'])")
        self.backends = list(backends)
        self.max_file_bytes = max_file_bytes

    def _limit(self, size: int, what: str) -> None:
        if size > self.max_file_bytes:
            raise ContentTooLargeError(
                f"{what} is {size:,} bytes, over the limit of {self.max_file_bytes:,} bytes: make it smaller or "
                "raise ipfs.max_file_mb (STUDIO_IPFS__MAX_FILE_MB)"
            )

    def _all(self, cid: str, size: int, name: str, pin) -> PinnedContent:  # type: ignore[no-untyped-def]
        results: list[PinResult] = []
        for backend in self.backends:
            try:
                result = pin(backend)
            except PinningError as exc:
                done = ", ".join(r.backend for r in results)
                note = f" (already pinned on: {done})" if done else ""
                raise type(exc)(f"{exc}{note}") from exc
            if result.cid != cid:
                raise CIDMismatchError(
                    f"{backend.name} returned {result.cid} for {name}, the studio computed {cid}: refused"
                )
            results.append(result)
        return PinnedContent(cid, size, name, tuple(results))

    def pin_bytes(self, data: bytes, *, name: str) -> PinnedContent:
        """Pin `data` (e.g. canonical metadata JSON) as a file named `name`."""
        self._limit(len(data), name)
        cid = cid_for_bytes(data)
        return self._all(cid, len(data), name, lambda b: b.pin_bytes(data, name=name, expected_cid=cid))

    def pin_file(self, path: str | os.PathLike[str]) -> PinnedContent:
        target = Path(path)
        if not target.is_file():
            raise ContentReadError(f"{target} does not exist or is not a regular file: check the path")
        size = target.stat().st_size
        self._limit(size, str(target))
        cid = cid_for_file(target)
        return self._all(cid, size, target.name, lambda b: b.pin_file(target, expected_cid=cid))

    def pin_directory(self, path: str | os.PathLike[str]) -> PinnedContent:
        root = Path(path)
        if not root.is_dir():
            raise ContentReadError(f"{root} does not exist or is not a folder: check the path")
        total = 0
        for file in root.rglob("*"):
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(root).parts):
                self._limit(file.stat().st_size, str(file))
                total += file.stat().st_size
        cid = cid_for_directory(root)
        return self._all(cid, total, root.name, lambda b: b.pin_directory(root, expected_cid=cid))

    def health(self) -> list[BackendHealth]:
        return [backend.health() for backend in self.backends]


def create_pinner(options: PinnerOptions, store: LocalStore | None) -> Pinner:
    """The Pinner `options` describe: one backend per `options.backends` entry, in that order."""
    timeouts = httpx.Timeout(
        connect=options.connect_timeout_s,
        read=options.read_timeout_s,
        write=options.read_timeout_s,
        pool=options.connect_timeout_s,
    )
    policy = RetryPolicy(retries=options.retries)
    backends: list[PinningBackend] = []
    for name in options.backends:
        if name == "local":
            if store is None:
                raise PinningError("ipfs.backends lists 'local' but no local store was given to create_pinner")
            backends.append(LocalPinning(store))
        elif name == "pinata":
            if not options.pinata_jwt:
                raise PinningAuthError(f"ipfs.backends lists 'pinata' but no JWT is set. {FIX_AUTH}")
            backends.append(
                PinataPinning(
                    options.pinata_jwt,
                    upload_url=options.pinata_api_url,
                    api_url=options.pinata_files_api_url,
                    timeouts=timeouts,
                    retries=policy,
                )
            )
        elif name == "kubo":
            backends.append(KuboPinning(options.kubo_api_url, timeouts=timeouts, retries=policy))
        else:
            raise PinningError(f"unknown pinning backend {name!r}: use 'local', 'pinata' or 'kubo'")
    return Pinner(backends, max_file_bytes=options.max_file_bytes)
