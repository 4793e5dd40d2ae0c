"""Choosing the device and dtype: cuda, then mps, then cpu; fp16 on cuda, bf16 where the CPU runs it well."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.generation.cpu import cpu_capabilities
from studio.generation.errors import ModelNotAvailableError

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class Placement:
    """Where the model runs and in which precision."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def cpu_runs_bf16_well() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX) that oneDNN may use.

    Without them PyTorch emulates bf16 and it is slower than fp32, so 'auto' stays on fp32 there."""
    return cpu_capabilities().native_bf16


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(requested: str) -> str:
    """The device to run on; an explicit choice that is not present is an error, not a silent fallback."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelNotAvailableError(
            "model.device is 'cuda' but this torch build sees no CUDA GPU: set STUDIO_MODEL__DEVICE=auto "
            "(or cpu), or install a CUDA build of torch."
        )
    if requested == "mps" and not _mps_available():
        raise ModelNotAvailableError(
            "model.device is 'mps' but Apple's Metal backend is not available here: set STUDIO_MODEL__DEVICE=auto."
        )
    return requested


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """fp16 on cuda and mps, bf16 on CPUs with native bf16, fp32 otherwise; an explicit choice wins."""
    if requested != "auto":
        return _DTYPES[requested]
    if device in ("cuda", "mps"):
        return torch.float16
    return torch.bfloat16 if cpu_runs_bf16_well() else torch.float32


def resolve_placement(device: str, dtype: str) -> Placement:
    """Device and dtype from the settings' values ('auto' or an explicit name)."""
    resolved_device = resolve_device(device)
    return Placement(device=resolved_device, dtype=resolve_dtype(dtype, resolved_device))
