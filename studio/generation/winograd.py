"""Winograd 3x3 convolutions: fewer multiplications for the float32 VAE decoder on the CPU.

Why: decoding a 512x512 image with the SD VAE in float32 on a 2-core Zen 4 held to AVX2 took 15.2 s,
13.0 s of it in oneDNN's direct 3x3 convolutions (512/256/128 channels at 64 to 512 pixels), already
at about 80% of the FMA peak. Only fewer multiplications make that much faster. Winograd minimal
filtering F(m x m, 3x3) computes an m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2
multiplications per input/output channel pair instead of 9 m^2: F(2x2,3x3) needs 16/36 of the direct
multiplications, F(4x4,3x3) 36/144 = 1/4. The channel sums turn those element-wise products into
alpha^2 independent GEMMs (tiles x C_in) @ (C_in x C_out), which MKL runs near peak; the transforms
around them are additions of whole slices scaled by 0/±1/±2/±4/±5/±8, memory-bound and cheap when the
image is processed in chunks of tile rows that stay in the L3 cache.

Measured with oneDNN/ATen/MKL held to AVX2 on a shared 2-core Zen 4, medians of 3 interleaved runs, in
seconds per call on a channels-last input. One thread while the machine was busy (±20%); two threads
while it was quiet, for the rows where it stayed quiet (-: a busy machine made two-thread runs
meaningless, as each of the transforms' many element-wise passes waited for a descheduled thread):

                                 ------- one thread --------   --- two threads ---
    layer (C_in->C_out @ H=W)    direct prepacked  F4     F2    direct   F4     F2
    VAE 512@64                    0.31    0.34    0.17   0.25    0.090  0.049  0.054
    VAE 512@128                   0.88    0.88    0.33   0.47    0.37   0.16   0.22
    VAE 512->256@256              2.56    2.33    0.78   1.18    0.75   0.35   0.52
    VAE 256@256                   0.78    0.82    0.39   0.58    0.38   0.20   0.30
    VAE 256->128@512              1.62    1.50    0.95   1.38    0.77   0.53   0.74
    VAE 256@512 (upsampler)       3.14    3.09    1.55   2.27     -      -      -
    VAE 128@512                   0.85    0.85    0.65   0.87     -      -      -
    UNet 320@64                   0.069   0.069   0.032  0.049    -      -      -
    UNet 640@32                   0.069   0.068   0.030  0.040    -      -      -
    UNet 1280@16                  0.109   0.072   0.044  0.046    -      -      -

A whole SD VAE decode of a 512x512 image (channels-last, every 3x3 convolution but conv_in and
conv_out swapped) took 14.7 s stock and 8.9 s with F4 on two threads of the quiet machine; on one
thread of the busy one 30.0 s stock, 16.8 s with F4, 21.7 s with F2. F(4x4) is the faster of the two
at every shape measured; the gain falls with the channel count, as the transforms (per channel) grow
beside the GEMMs (per channel pair).

Numerical error, against a float64 reference, relative to the largest output magnitude, random
unit-variance inputs and default-initialised weights, 128 to 1280 input channels: direct float32
convolution about 2.5e-6, F(2x2,3x3) about 5e-7 (all its transform coefficients are exact in binary),
F(4x4,3x3) about 1e-5 (the kernel transform's 1/6, 1/12 and 1/24 round, and the output transform
scales products by up to 8 before they cancel: about two bits more than direct). A whole SD VAE
decode of a 512x512 image (random weights, same architecture) differed from the stock one by at
most 5.3e-5 in [-1, 1] with F4 and 3.9e-5 with F2, below 0.01 of an 8-bit step.

Memory: the transformed weight U = G g G^T has alpha^2 instead of 9 values per channel pair, 16/9 times
the weight for F2 and 36/9 = 4 times for F4; the original weight is dropped unless a fallback to the
direct convolution is asked for. The SD VAE decoder's 31 eligible convolutions hold 189 MiB of
weights: 327 MiB transformed with F2 (+138 MiB), 736 MiB with F4 (+547 MiB). Per call, the buffers of
one chunk (about 1.7 x chunk_bytes, 55 MiB by default) come on top of the output; unchunked, the tile
tensors of the decoder's 256-channel 512x512 convolutions would take 576 MiB each for the input and
the products. Peak RSS of a process loading the SD VAE and decoding one 512x512 image (one thread):
1.79 GiB stock, 2.05 GiB with F2, 2.43 GiB with F4. The UNet's 3x3 convolution weights are 2.0 GiB,
most of them 1280 channels at 8x8 and 16x16 where the activations are tiny beside the weights:
max_weight_bytes keeps those out (see winograd_convs).

Inference only (no autograd), float32 on the CPU, 3x3 stride 1 padding 1 ungrouped convolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction as Fr

import torch
import torch.nn.functional as F
from torch import nn

from studio.generation.half_storage import HalfStoredConv2d
from studio.generation.heap import FreedMemoryReturner, return_freed_memory


@dataclass(frozen=True)
class WinogradScheme:
    """F(m x m, 3x3): output tiles of m x m pixels from input tiles of alpha = m + 2 pixels.

    The 2-D transforms are the 1-D ones applied to rows then columns: V = B^T d B for an input tile
    d, U = G g G^T for a kernel g, and the output tile A^T (U ⊙ V) A (⊙ summed over input channels,
    which is what turns the element-wise products into GEMMs)."""

    name: str
    m: int
    input_transform: tuple[tuple[Fr, ...], ...]  # B^T, alpha x alpha
    kernel_transform: tuple[tuple[Fr, ...], ...]  # G, alpha x 3
    output_transform: tuple[tuple[Fr, ...], ...]  # A^T, m x alpha

    @property
    def alpha(self) -> int:
        return self.m + 2


def _matrix(rows: list[list[int | Fr]]) -> tuple[tuple[Fr, ...], ...]:
    return tuple(tuple(Fr(value) for value in row) for row in rows)


# Interpolation points 0, 1, -1 and infinity (Lavin & Gray 2016, "Fast Algorithms for Convolutional
# Neural Networks").
F2 = WinogradScheme(
    name="F(2x2,3x3)",
    m=2,
    input_transform=_matrix([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
    kernel_transform=_matrix([[1, 0, 0], [Fr(1, 2), Fr(1, 2), Fr(1, 2)], [Fr(1, 2), Fr(-1, 2), Fr(1, 2)], [0, 0, 1]]),
    output_transform=_matrix([[1, 1, 1, 0], [0, 1, -1, -1]]),
)

# Points 0, 1, -1, 2, -2 and infinity: the smallest integers, hence the smallest rounding errors.
F4 = WinogradScheme(
    name="F(4x4,3x3)",
    m=4,
    input_transform=_matrix(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ]
    ),
    kernel_transform=_matrix(
        [
            [Fr(1, 4), 0, 0],
            [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)],
            [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
            [Fr(1, 24), Fr(1, 12), Fr(1, 6)],
            [Fr(1, 24), Fr(-1, 12), Fr(1, 6)],
            [0, 0, 1],
        ]
    ),
    output_transform=_matrix([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
)

SCHEMES = {"F2": F2, "F4": F4}

# Tiles per chunk are chosen so that one chunk's transformed input and GEMM output (alpha^2 floats per
# tile and channel each) take about this many bytes. Measured on a Zen 4 with a 32 MiB L3 (one thread,
# F4, 512->512 at 128x128): 8 MiB 1.04 s, 32 MiB 0.56 s, 128 MiB 0.68 s, no chunking 1.11 s. Smaller
# chunks give GEMMs of too few rows (MKL repacks each weight slice per call), larger ones leave the cache.
DEFAULT_CHUNK_BYTES = 32 * 2**20


def _combine(out: torch.Tensor, coefficients: tuple[Fr, ...], terms: list[torch.Tensor]) -> None:
    """out = sum(c * term) over the non-zero coefficients, as whole-slice multiply-adds.

    These passes are memory-bound, so the first two terms go in one three-operand add (read, read,
    write) rather than a copy and an add (read, write, read, read, write)."""
    pairs = [(float(c), term) for c, term in zip(coefficients, terms, strict=True) if c != 0]
    pairs.sort(key=lambda pair: pair[0] != 1)  # a term with coefficient 1 first: it needs no multiply
    (c0, t0), rest = pairs[0], pairs[1:]
    if not rest:
        torch.mul(t0, c0, out=out)
        return
    if c0 == 1:
        torch.add(t0, rest[0][1], alpha=rest[0][0], out=out)
    else:
        torch.mul(t0, c0, out=out)
        out.add_(rest[0][1], alpha=rest[0][0])
    for c, term in rest[1:]:
        out.add_(term, alpha=c)


def transform_weight(weight: torch.Tensor, scheme: WinogradScheme) -> torch.Tensor:
    """U = G g G^T for every (out, in) kernel, as (alpha^2, C_in, C_out): the right operands of the GEMMs.

    Computed in float64 and rounded once to float32, so that U adds no error of its own; in blocks of
    output channels, so that the float64 temporaries stay small beside the weight."""
    out_channels, in_channels = weight.shape[:2]
    g = torch.tensor([[float(v) for v in row] for row in scheme.kernel_transform], dtype=torch.float64)
    u = torch.empty(scheme.alpha * scheme.alpha, in_channels, out_channels, dtype=torch.float32)
    block = 64
    for first in range(0, out_channels, block):
        kernels = weight.detach()[first : first + block].to(torch.float64)
        transformed = torch.einsum("ak,oikl,bl->abio", g, kernels, g)
        u[:, :, first : first + block] = transformed.reshape(u.shape[0], in_channels, -1)
    return u


class WinogradConv2d(nn.Module):
    """A 3x3, stride 1, padding 1 float32 Conv2d computed by Winograd minimal filtering.

    The weight is transformed once here and the original dropped, unless fallback_below_pixels is
    set: inputs with fewer pixels (H*W) than that then go to F.conv2d with the original weight, which
    is kept for it."""

    def __init__(
        self,
        conv: nn.Conv2d,
        scheme: WinogradScheme = F4,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        fallback_below_pixels: int | None = None,
    ) -> None:
        super().__init__()
        problem = winograd_ineligibility(conv)
        if problem is not None:
            raise ValueError(f"WinogradConv2d cannot replace {conv}: {problem}")
        if chunk_bytes <= 0:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self.transformed_weight: torch.Tensor  # a buffer: moves with .to() and stays out of state_dict
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.scheme = scheme
        self.chunk_bytes = chunk_bytes
        self.fallback_below_pixels = fallback_below_pixels
        with torch.no_grad():
            self.register_buffer("transformed_weight", transform_weight(conv.weight, scheme), persistent=False)
        self.weight = None if fallback_below_pixels is None else conv.weight
        self.bias = None if conv.bias is None else conv.bias
        # Exact fractions (from the scheme), turned into Python floats in each add: no tensors to move.
        self._bt = scheme.input_transform
        self._at = scheme.output_transform
        ones = next(r for r in range(scheme.alpha) if all(row[r] == 1 for row in scheme.output_transform))
        self._bias_slice = ones * scheme.alpha + ones

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), padding=1, {self.scheme.name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.dtype != torch.float32:
            raise ValueError(
                f"WinogradConv2d({self.in_channels}->{self.out_channels}) takes float32 (N, {self.in_channels}, H, W) "
                f"input, got {x.dtype} {tuple(x.shape)}"
            )
        h, w = x.shape[2:]
        if self.weight is not None and self.fallback_below_pixels is not None and h * w < self.fallback_below_pixels:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        with torch.no_grad():
            return self._winograd(x)

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        m, alpha = self.scheme.m, self.scheme.alpha
        n, c, h, w = x.shape
        k = self.out_channels
        tile_rows, tile_cols = math.ceil(h / m), math.ceil(w / m)
        padded_width = tile_cols * m + 2
        # Everything runs channels-last (channels contiguous): the GEMMs' inner dimension, and the
        # transforms' adds then touch long contiguous runs.
        x_nhwc = x.permute(0, 2, 3, 1)
        tiles_per_row = n * tile_cols
        rows_per_chunk = max(1, min(tile_rows, self.chunk_bytes // (alpha * alpha * 4 * (c + k) * tiles_per_row)))
        chunk_tiles = rows_per_chunk * tiles_per_row

        # Buffers reused by every chunk: allocating them afresh would fault in new pages each time.
        slab = x.new_zeros(n, rows_per_chunk * m + 2, padded_width, c)
        rows = x.new_empty(alpha, n, rows_per_chunk, padded_width, c)
        v = x.new_empty(alpha * alpha, chunk_tiles, c)
        products = x.new_empty(alpha * alpha, chunk_tiles, k)
        half = x.new_empty(m, alpha, chunk_tiles, k)
        out = x.new_empty(n, tile_rows * m, tile_cols * m, k)

        for first_tile_row in range(0, tile_rows, rows_per_chunk):
            chunk_rows = min(rows_per_chunk, tile_rows - first_tile_row)
            tiles = n * chunk_rows * tile_cols
            # Zero-padded input rows for this chunk: image row (first_tile_row * m - 1 + slab row).
            top = first_tile_row * m - 1
            bottom = top + chunk_rows * m + 2
            source_top, source_bottom = max(top, 0), min(bottom, h)
            slab_used = slab[:, : chunk_rows * m + 2]
            slab_used.zero_()
            slab_used[:, source_top - top : source_bottom - top, 1 : w + 1].copy_(x_nhwc[:, source_top:source_bottom])

            # Input transform, rows then columns: V = B^T d B. The tiles overlap by 2 pixels; strided
            # slices pick row (column) a of every tile.
            row_terms = [slab_used[:, a : a + chunk_rows * m : m] for a in range(alpha)]
            for r in range(alpha):
                _combine(rows[r, :, :chunk_rows], self._bt[r], row_terms)
            # Each add covers all alpha transformed rows at once: few, large operations (each one is a
            # parallel region; hundreds of small ones cost more in synchronisation than they compute).
            v_used = v[:, :tiles].view(alpha, alpha, n, chunk_rows, tile_cols, c)
            column_terms = [rows[:, :, :chunk_rows, b : b + tile_cols * m : m] for b in range(alpha)]
            for s in range(alpha):
                _combine(v_used[:, s], self._bt[s], column_terms)

            # alpha^2 independent GEMMs (tiles x C_in) @ (C_in x C_out): all of the multiplications.
            torch.bmm(v[:, :tiles], self.transformed_weight, out=products[:, :tiles])
            if self.bias is not None:
                # Column `ones` of A^T is all ones, so a bias added to the one product slice M[ones, ones]
                # reaches every output pixel once: 1/alpha^2 of the adds of adding it to the output.
                products[self._bias_slice, :tiles].add_(self.bias)

            # Output transform, rows then columns: Y = A^T M A, written straight into the output.
            product_terms = list(products[:, :tiles].view(alpha, alpha, tiles, k))
            half_used = half[:, :, :tiles]
            for p in range(m):
                _combine(half_used[p], self._at[p], product_terms)
            out_rows = out[:, first_tile_row * m : (first_tile_row + chunk_rows) * m]
            out_tiles = out_rows.view(n, chunk_rows, m, tile_cols, m, k)
            half_terms = [
                half_used[:, s].view(m, n, chunk_rows, tile_cols, k).permute(1, 2, 0, 3, 4) for s in range(alpha)
            ]
            for q in range(m):
                _combine(out_tiles[:, :, :, :, q], self._at[q], half_terms)

        result = out[:, :h, :w].permute(0, 3, 1, 2)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return result.contiguous(memory_format=torch.channels_last)
        return result.contiguous()


def winograd_ineligibility(module: nn.Module) -> str | None:
    """Why module cannot become a WinogradConv2d, or None if it can.

    A float16-stored convolution (half_storage.py, memory "balanced") can: its weight widens to float32
    exactly, and the transformed weight is float32 like every other."""
    half_stored = type(module) is HalfStoredConv2d
    if type(module) is not nn.Conv2d and not half_stored:
        return (
            "only exact nn.Conv2d modules (or their float16-stored form, HalfStoredConv2d) are replaced "
            "(a subclass may do more in forward)"
        )
    problems = []
    if module.kernel_size != (3, 3):
        problems.append(f"kernel_size {module.kernel_size} is not (3, 3)")
    if module.stride != (1, 1):
        problems.append(f"stride {module.stride} is not 1")
    padding_mode = "zeros" if half_stored else module.padding_mode  # HalfStoredConv2d: zeros only
    if module.padding != (1, 1) or padding_mode != "zeros":  # a tuple in both classes
        problems.append(f"padding {module.padding!r} ({padding_mode}) is not 1 with zeros")
    if module.dilation != (1, 1):
        problems.append(f"dilation {module.dilation} is not 1")
    if module.groups != 1:
        problems.append(f"groups {module.groups} is not 1")
    weight = _weight(module)
    if (weight.dtype != torch.float32 and not half_stored) or weight.device.type != "cpu":
        problems.append(f"weight is {weight.dtype} on {weight.device}, not float32 on the CPU")
    return "; ".join(problems) or None


def _weight(module: nn.Module) -> torch.Tensor:
    """A convolution's weight as it is kept (float16 for a HalfStoredConv2d)."""
    weight = module.stored_weight if isinstance(module, HalfStoredConv2d) else module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def winograd_convs(
    model: nn.Module,
    *,
    scheme: WinogradScheme = F4,
    min_channels: int = 128,
    max_weight_bytes: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    fallback_below_pixels: int | None = None,
) -> int:
    """Swap every eligible nn.Conv2d of a float32 CPU model for a WinogradConv2d; returns how many.

    Eligible: an exact 3x3, stride 1, padding 1, ungrouped float32 Conv2d (a subclass may do more in
    forward) with at least min_channels input and output channels, and, if max_weight_bytes is set, a
    float32 weight of at most that many bytes.

    min_channels: the transforms cost per channel, the saving per channel pair; at 128 channels F4 was
    still 1.3x faster than direct, below that it was not measured. It keeps out the VAE's conv_in (4
    channels in) and conv_out (3 out).

    max_weight_bytes: the image size is known only at request time, so the weight size stands in for
    "the activations are large beside the weights". In the SD 2.1 UNet, 24 MiB swaps the 3x3
    convolutions of the 64x64 (320-channel) and 32x32 (640-channel) levels whose weights are at most
    21 MiB (176 MiB of weights, F4 +527 MiB, F2 +137 MiB); 48 MiB also the 28-42 MiB 1280/1920->640
    and 640->1280 ones (274 MiB, F4 +822 MiB, F2 +213 MiB). The 1280->1280 and wider convolutions
    (56-112 MiB each, 1.7 GiB in all) stay direct: transformed, they would need 4x that.

    fallback_below_pixels: keep the original weight too (9/alpha^2 more memory) and use the direct
    convolution for inputs of fewer pixels, where the tiles are too few for the GEMMs to pay.

    For the SD VAE decoder the defaults swap its 31 3x3 convolutions (F4: 189 MiB of weights become
    736 MiB).
    """
    names = [
        name
        for name, module in model.named_modules()
        if winograd_ineligibility(module) is None
        and min(module.in_channels, module.out_channels) >= min_channels
        and (max_weight_bytes is None or _weight(module).numel() * 4 <= max_weight_bytes)
    ]
    returner = FreedMemoryReturner()
    for qualified_name in names:
        parent_name, _, child_name = qualified_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        child = getattr(parent, child_name)
        conv = child.widened() if isinstance(child, HalfStoredConv2d) else child
        replacement = WinogradConv2d(conv, scheme, chunk_bytes=chunk_bytes, fallback_below_pixels=fallback_below_pixels)
        setattr(parent, child_name, replacement)
        weight = _weight(child)
        del child, conv, replacement
        returner.replaced(weight)
        del weight
    # The float64 intermediates of the weight transforms and the dropped weights would otherwise stay
    # in glibc's heap (measured: 1.82 GiB before the first decode instead of about 1.5).
    return_freed_memory()
    return len(names)
