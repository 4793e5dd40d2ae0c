"""Pinning: one interface (`PinningBackend`), three backends (local, Pinata, Kubo), and `Pinner`,
which pins to all configured backends and refuses any CID that differs from the local computation."""

from metadata.errors import (
    CIDMismatchError,
    ContentTooLargeError,
    PinningAuthError,
    PinningError,
    PinningQuotaError,
    PinningUnavailableError,
)
from metadata.pinning.base import BackendHealth, PinningBackend, PinResult
from metadata.pinning.http import RetryPolicy
from metadata.pinning.kubo import KuboPinning
from metadata.pinning.local import LocalPinning
from metadata.pinning.pinata import PinataPinning
from metadata.pinning.pinner import PinnedContent, Pinner, PinnerOptions, create_pinner

__all__ = [
    "BackendHealth",
    "CIDMismatchError",
    "ContentTooLargeError",
    "KuboPinning",
    "LocalPinning",
    "PinResult",
    "PinataPinning",
    "PinnedContent",
    "Pinner",
    "PinnerOptions",
    "PinningAuthError",
    "PinningBackend",
    "PinningError",
    "PinningQuotaError",
    "PinningUnavailableError",
    "RetryPolicy",
    "create_pinner",
]
