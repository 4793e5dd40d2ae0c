"""Giving freed memory back to the operating system: glibc's heap keeps it otherwise.

A loaded model is a few large tensors that live for the whole process, and every image allocates and
frees hundreds of activation and scratch buffers of 1-64 MiB around them. glibc serves an allocation
above its mmap threshold with a mapping of its own, unmapped on free; below it, from the heap, which
keeps freed space for reuse and returns only its top end. The threshold starts at 128 KiB but rises
to the size of every mapped block freed, up to 32 MiB, so after the first image nearly all of those
buffers come from the heap. Held to AVX2, sd-turbo in float32 (memory "balanced") settled 0.2 GiB
higher after one 512x512 image and 0.4 after the next.

Holding the threshold low instead (mallopt M_MMAP_THRESHOLD = 1 MiB) returned every buffer at once,
but made each image fault in fresh pages for all of them: the fast image took 8.9 s instead of 6.6 s.
So the engine trims the heap (malloc_trim) at a few points instead: after swapping a model's layers at
load, and in the memory-saving modes before the decoder and after each image.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys

import torch


def return_freed_memory() -> None:
    """Hand the heap's free memory back to the OS: replaced weights at load, an image's buffers.

    Each packed weight is allocated before the plain one it replaces is freed, so the plain one's
    space is rarely reused. Measured on sd-turbo in bf16, loading and making one 512x512 image peaked
    at 3.9 GiB without this and 3.4 GiB with it (3.5 GiB with no prepacking at all)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):  # not glibc: musl has no malloc_trim
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"))


class FreedMemoryReturner:
    """return_freed_memory() after every `every_bytes` of weights replaced, for the loops that swap a
    model's layers: trimmed only at the end, the heap held the whole model's replaced weights beside
    their new forms (float32 on AVX2: the text encoder's prepacking peaked 0.9 GiB above where it
    ended, the UNet's Winograd transforms 0.6 GiB)."""

    def __init__(self, every_bytes: int = 128 << 20) -> None:
        self.every_bytes = every_bytes
        self.pending = 0

    def replaced(self, weight: torch.Tensor | None) -> None:
        if weight is not None:
            self.pending += weight.numel() * weight.element_size()
        if self.pending >= self.every_bytes:
            return_freed_memory()
            self.pending = 0
