"""What this CPU can run, and which of the engine's CPU optimizations pay on it.

The optimizations were first tuned on an AVX512-BF16 CPU, where they are a clear win; on an AVX2-only
CPU (most laptops and older cloud VMs) the same choices crashed in bf16 (oneDNN's bf16 weight reorder
needs AVX512BW/VL/DQ or AVX-NE-CONVERT) and made fp32 slower (prepacked 3x3 convolutions: a UNet call
6.3 s stock, 8.4 s prepacked). So each optimization is switched on per CPU class, only where the CPU
can run it and where bench/generate.py measured it to help:

| CPU class (what oneDNN and ATen may use)   | float32                             | bfloat16                          |
|--------------------------------------------|-------------------------------------|-----------------------------------|
| AVX512 (with or without BF16), no AMX      | prepacked convolutions and linears  | prepack + blocked attention       |
| AMX                                        | prepacked convolutions and linears  | prepack (SDPA uses AMX itself)    |
| AVX2 only                                  | prepacked linears only              | none: stock kernels, with warning |
| any other (aarch64, older x86)             | none: stock kernels                 | none: stock kernels, with warning |

On every x86 class float32 also gets Winograd 3x3 convolutions (winograd.py), and float32 and native
bf16 the tiny autoencoder's ReLUs inside its convolutions (fusion.py) and the UNet's activations in
channels-last (NHWC) layout, as the decoders always have (not yet in bf16 with AMX: unmeasured there). A
float32 model whose weights are kept in float16 (STUDIO_MODEL__MEMORY=low, half_storage.py) gets none of
these: they need float32 weights of their own. With STUDIO_MODEL__MEMORY=balanced only the text encoders
and the VAE keep float16 weights (and take none of these until Winograd widens the VAE's on its first
use, but the text encoders' linears compute on the oneDNN matmul of the prepacked ones, widened per
call); the denoiser gets all of them, as with `speed`, but its Winograd convolutions are F(2x2,3x3),
whose transformed weights take 16/9 of the originals' memory instead of F(4x4,3x3)'s 4x (held to AVX2:
0.6 GiB less for sd-turbo, its fast image 4% slower, paired in one process).

bfloat16 only gets optimized kernels where the CPU has native bf16 instructions (AVX512-BF16 or AMX).
Elsewhere PyTorch still runs bf16 correctly on its emulated kernels, slower than float32: 'auto'
never picks it there, and an image made that way says so in its warnings.

The answers come from what PyTorch itself reports (ATen's kernel class, oneDNN's bf16 support), not
only from /proc/cpuinfo: `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` holds a bigger CPU to the
AVX2 class, which is how the test suite checks the AVX2 path on any x86-64 machine.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from collections.abc import Iterable
from dataclasses import dataclass

import torch

# Flags from /proc/cpuinfo that decide what runs fast; recorded by bench/generate.py.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class CpuCapabilities:
    """What the CPU offers and what PyTorch will use of it in this process."""

    machine: str  # x86_64, aarch64, arm64
    model_name: str | None
    flags: tuple[str, ...]  # the INTERESTING_FLAGS this CPU reports
    aten_capability: str  # ATen's vectorized kernels: "AVX512", "AVX2", "DEFAULT", ... (ATEN_CPU_CAPABILITY caps it)
    onednn: bool  # this torch build has oneDNN (mkldnn)
    onednn_bf16: bool  # oneDNN may run bf16 kernels here (ONEDNN_MAX_CPU_ISA caps it)
    amx: bool

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX512-BF16 or AMX), usable by oneDNN in this process.

        Off Linux there are no cpuinfo flags; oneDNN's own answer decides (Apple silicon runs on mps)."""
        if not self.onednn_bf16:
            return False
        if not self.flags and self.model_name is None:
            return True
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def cpu_class(self) -> str:
        """A short name of the class the optimizations are chosen by: avx512_amx, avx512_bf16, avx512, avx2, other."""
        if self.amx and self.onednn_bf16:
            return "avx512_amx"
        if self.aten_capability.startswith("AVX512"):
            return "avx512_bf16" if self.native_bf16 else "avx512"
        if self.aten_capability == "AVX2":
            return "avx2"
        return "other"

    def describe(self) -> dict[str, object]:
        """For the bench's JSON line and the Settings tab."""
        return {
            "cpu_model": self.model_name or platform.processor() or self.machine,
            "machine": self.machine,
            "cpu_class": self.cpu_class,
            "isa_flags": list(self.flags),
            "aten_capability": self.aten_capability,
            "onednn_bf16": self.onednn_bf16,
        }


def _cpuinfo() -> tuple[str | None, tuple[str, ...]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None, ()
    model_name = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model_name is None:
            model_name = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 / aarch64
            flags = set(value.split())
    return model_name, tuple(flag for flag in INTERESTING_FLAGS if flag in flags)


def _onednn_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_capabilities() -> CpuCapabilities:
    """This CPU as PyTorch sees it in this process (read once: the ISA caps are read at start-up)."""
    model_name, flags = _cpuinfo()
    get_capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return CpuCapabilities(
        machine=platform.machine(),
        model_name=model_name,
        flags=flags,
        aten_capability=str(get_capability()),
        onednn=bool(torch.backends.mkldnn.is_available()),
        onednn_bf16=_onednn_bf16(),
        amx=amx,
    )


@dataclass(frozen=True)
class CpuPlan:
    """Which optimizations to apply to a model loaded on this CPU in one dtype."""

    prepack_convs: bool = False
    prepack_linears: bool = False
    prepack_convs_by_size: bool = False  # the UNet's, packed for their input size (AVX2: prepack.SizePackedConv2d)
    blocked_attention: bool = False
    winograd_convs: bool = False
    # The denoiser's Winograd convolutions as F(2x2,3x3) rather than F(4x4,3x3): 16/9 of their weights'
    # memory instead of 4x, for a slower UNet (memory "balanced")
    winograd_f2: bool = False
    fused_conv_relu: bool = False
    channels_last_unet: bool = False  # the denoiser's activations in NHWC, oneDNN's preferred layout
    fp16_weight_storage: bool = False  # weights in float16, computed in float32 (half_storage.py)
    fp16_encoder_storage: bool = False  # the same for the text encoders and the VAE only (memory "balanced")
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """What provenance records under cpu_optimizations (each changes the last bits of some values)."""
        names = []
        if self.prepack_convs and self.prepack_linears:
            names.append("onednn_prepack")
        elif self.prepack_linears:
            names.append("onednn_prepack_linear")
        elif self.prepack_convs:
            names.append("onednn_prepack_conv")
        if self.prepack_convs_by_size and not self.prepack_convs:
            names.append("onednn_prepack_conv_by_size")
        if self.blocked_attention:
            names.append("blocked_attention")
        if self.winograd_convs:
            names.append("winograd_conv_f2" if self.winograd_f2 else "winograd_conv")
        if self.fused_conv_relu:
            names.append("fused_conv_relu")
        if self.channels_last_unet:
            names.append("channels_last_unet")
        if self.fp16_weight_storage:
            names.append("fp16_weight_storage")
        if self.fp16_encoder_storage:
            names.append("fp16_encoder_storage")
        return names


OPTIMIZATIONS = frozenset(
    {
        "prepack_convs",
        "prepack_linears",
        "prepack_convs_by_size",
        "blocked_attention",
        "winograd_convs",
        "fused_conv_relu",
        "channels_last_unet",
    }
)


def plan_for(
    dtype: torch.dtype,
    caps: CpuCapabilities | None = None,
    *,
    optimize: bool = True,
    without: Iterable[str] = (),
    weight_dtype: torch.dtype | None = None,
    encoder_weight_dtype: torch.dtype | None = None,
) -> CpuPlan:
    """The optimizations that pay for dtype on this CPU, and warnings about the dtype itself.

    optimize=False (STUDIO_MODEL__CPU_OPTIMIZATIONS=false) keeps the stock kernels but still warns;
    `without` leaves out single optimizations by their CpuPlan field name (bench/generate.py measures
    each one's share that way). weight_dtype float16 (STUDIO_MODEL__MEMORY=low) keeps a float32
    model's weights in float16: prepacking and Winograd need float32 weights of their own (Winograd
    four times as many), so they are left out; memory was asked for, not speed. encoder_weight_dtype
    float16 (STUDIO_MODEL__MEMORY=balanced) does the same for the text encoders and the VAE only and
    keeps the rest of the plan for the denoiser, its Winograd convolutions as F(2x2,3x3)."""
    if weight_dtype == torch.float16 and dtype == torch.float32:
        return CpuPlan(fp16_weight_storage=True)
    plan = _plan(dtype, caps or cpu_capabilities(), optimize)
    unknown = set(without) - OPTIMIZATIONS
    if unknown:
        raise ValueError(f"unknown CPU optimizations {sorted(unknown)}: choose from {sorted(OPTIMIZATIONS)}")
    half_encoders = encoder_weight_dtype == torch.float16 and dtype == torch.float32
    return dataclasses.replace(
        plan,
        fp16_encoder_storage=half_encoders,
        winograd_f2=half_encoders and plan.winograd_convs,
        **dict.fromkeys(without, False),  # type: ignore[arg-type]  # only bool fields: checked above
    )


def _plan(dtype: torch.dtype, caps: CpuCapabilities, optimize: bool) -> CpuPlan:
    warnings: tuple[str, ...] = ()
    if dtype == torch.bfloat16 and not caps.native_bf16:
        warnings = (
            "bfloat16 on this CPU (no AVX512-BF16 or AMX instructions) runs on PyTorch's emulated kernels, "
            "slower than float32: set STUDIO_MODEL__DTYPE=auto (float32 here) for speed.",
        )
    elif dtype == torch.float16:
        warnings = (
            "float16 on the CPU runs on PyTorch's emulated kernels, slower than float32: set "
            "STUDIO_MODEL__DTYPE=auto for speed.",
        )
    if not optimize or not caps.onednn:
        return CpuPlan(warnings=warnings)
    if dtype == torch.float32 and caps.cpu_class != "other":
        # Measured on x86-64 only; other CPUs (aarch64) keep the stock kernels until measured.
        # On AVX2 the prepacked 3x3 convolutions ran slower than ATen's (oneDNN chooses their layout
        # without the input size); prepacked linears were as fast or faster on every class.
        # Winograd F(4x4,3x3) does a quarter of the multiplications of the wide 3x3 convolutions that
        # dominate the VAE decoder and the UNet's outer levels (studio/generation/winograd.py).
        # The tiny autoencoder's ReLUs and residual sums inside its convolutions: a 512x512 decode
        # 7% faster held to AVX2, 13% on AVX-512, the decoders already channels-last (fusion.py).
        # On AVX2 oneDNN picks a 3x3 convolution's weight layout by the input size too: packed at load
        # (without it) some ran 3-6x slower than plain, packed for their size all ran faster.
        # The UNet's activations channels-last: its calls 1.5% faster held to AVX2, 1-4% on AVX-512 (paired).
        avx512 = caps.aten_capability.startswith("AVX512")
        return CpuPlan(
            prepack_convs=avx512,
            prepack_linears=True,
            prepack_convs_by_size=not avx512,
            winograd_convs=True,
            fused_conv_relu=True,
            channels_last_unet=True,
            warnings=warnings,
        )
    if dtype == torch.bfloat16 and caps.native_bf16:
        # With AMX tiles PyTorch's own SDPA computes bf16 attention in bf16; without, in fp32.
        # Channels-last UNet activations: 1-3% of a UNet call on AVX512-BF16 (paired); not yet
        # measured with AMX.
        return CpuPlan(
            prepack_convs=True,
            prepack_linears=True,
            blocked_attention=not caps.amx,
            fused_conv_relu=True,
            channels_last_unet=not caps.amx,
            warnings=warnings,
        )
    return CpuPlan(warnings=warnings)
