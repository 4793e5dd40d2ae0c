"""Choosing the device and dtype: cuda, then mps, then cpu; fp16 on cuda, bf16 where the CPU runs it well."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from studio.generation.cpu import cpu_capabilities
from studio.generation.errors import ModelNotAvailableError

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


# Below this much RAM, memory "auto" keeps a float32 model's weights in float16 (half_storage.py):
# sd-turbo in float32 peaks near 6.5 GiB, which an 8 GiB laptop with a browser open does not have.
LOW_MEMORY_BELOW_BYTES = 12 << 30

MemoryMode = Literal["speed", "balanced", "low"]

# The components a request runs once per image (not once per denoising step): memory "balanced" keeps
# their weights in float16, where widening them for each call costs little beside the denoiser's steps.
ONCE_PER_IMAGE_COMPONENTS = ("text_encoder", "text_encoder_2", "vae")


@dataclass(frozen=True)
class Placement:
    """Where the model runs, in which precision it computes and in which it keeps its weights."""

    device: str
    dtype: torch.dtype
    # float16 where a float32 model keeps its weights in half precision (studio/generation/half_storage.py).
    weight_dtype: torch.dtype | None = None
    # float16 where a float32 model keeps only its ONCE_PER_IMAGE_COMPONENTS' weights in half precision
    # (memory "balanced"): the denoiser keeps float32 weights and every CPU optimization of "speed".
    encoder_weight_dtype: torch.dtype | None = None

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def storage_dtype(self, component: str) -> torch.dtype:
        """The dtype a pipeline component's weights are kept in (its arithmetic is always `dtype`)."""
        if self.weight_dtype is not None:
            return self.weight_dtype
        if self.encoder_weight_dtype is not None and component in ONCE_PER_IMAGE_COMPONENTS:
            return self.encoder_weight_dtype
        return self.dtype

    @property
    def saves_memory(self) -> bool:
        """Memory "low" or "balanced" on the CPU: memory over the last few percent of speed."""
        return self.device == "cpu" and (self.weight_dtype is not None or self.encoder_weight_dtype is not None)

    @property
    def half_precision_files(self) -> bool:
        """Whether to read a model's "fp16" weight files when it has them (half the download and memory)."""
        return self.dtype != torch.float32 or self.weight_dtype == torch.float16


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


def physical_memory_bytes() -> int | None:
    """This machine's RAM, where the OS says (Linux, macOS); None elsewhere."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def resolve_memory(memory: str, device: str, dtype: torch.dtype, *, ram_bytes: int | None = None) -> MemoryMode:
    """What memory setting applies: an explicit one as asked, 'auto' 'low' on a machine with less RAM
    than LOW_MEMORY_BELOW_BYTES (ram_bytes: this machine's when not given) and 'balanced' elsewhere.
    Only a float32 model on the CPU has a choice: other devices and dtypes are half already or have
    memory of their own, and always get 'speed'.

    'balanced' is auto's choice with enough RAM: for sd-turbo held to AVX2 its fast 512x512 image
    peaked at 5.6 GiB against 6.4 and took 6.58 s against 6.42 (the text encoder's widening, 0.24 s)."""
    if device != "cpu" or dtype != torch.float32:
        return "speed"
    if memory in ("speed", "balanced", "low"):
        return memory  # type: ignore[return-value]  # one of MemoryMode: checked above
    ram = ram_bytes if ram_bytes is not None else physical_memory_bytes()
    return "low" if ram is not None and ram < LOW_MEMORY_BELOW_BYTES else "balanced"


def resolve_weight_dtype(
    memory: str, device: str, dtype: torch.dtype, *, ram_bytes: int | None = None
) -> torch.dtype | None:
    """float16 weight storage for every component of a float32 model on the CPU when memory resolves
    to 'low' (resolve_memory); None (weights in the compute dtype) otherwise."""
    return torch.float16 if resolve_memory(memory, device, dtype, ram_bytes=ram_bytes) == "low" else None


def resolve_encoder_weight_dtype(
    memory: str, device: str, dtype: torch.dtype, *, ram_bytes: int | None = None
) -> torch.dtype | None:
    """float16 weight storage for the text encoders and the VAE only (ONCE_PER_IMAGE_COMPONENTS) when
    memory resolves to 'balanced' (resolve_memory); None otherwise."""
    return torch.float16 if resolve_memory(memory, device, dtype, ram_bytes=ram_bytes) == "balanced" else None


def resolve_placement(device: str, dtype: str, memory: str = "speed") -> Placement:
    """Device, dtype and weight storage from the settings' values ('auto' or an explicit name)."""
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    ram = physical_memory_bytes()  # read once: both answers from the same figure
    return Placement(
        device=resolved_device,
        dtype=resolved_dtype,
        weight_dtype=resolve_weight_dtype(memory, resolved_device, resolved_dtype, ram_bytes=ram),
        encoder_weight_dtype=resolve_encoder_weight_dtype(memory, resolved_device, resolved_dtype, ram_bytes=ram),
    )
