"""Weights kept in float16 and computed in float32: about half the memory of a float32 model on the CPU.

Why: sd-turbo in float32 holds 4.8 GiB of weights (UNet 3.2, text encoder 1.3, VAE 0.3 GiB), too much
beside a browser on an 8 GiB laptop, and an AVX2-only CPU has no fast half-precision arithmetic
(PyTorch emulates bf16 and fp16 there, slower than float32). Keeping each weight in float16 and
widening it to float32 just for its own layer's call gives float32 arithmetic at half the weights'
memory. The widening is exact, so a model whose files are float16 (the "fp16" variant every
Stable Diffusion repository ships) computes exactly what the same files loaded into float32 compute.
Rounding float32 files to float16 is not exact: an image's provenance names "fp16_weight_storage"
among its cpu_optimizations, and the weights' hash or revision says which files were read.

The price is the widening itself, once per layer call (about 5 GiB of float32 written per sd-turbo
UNet call): bench/generate.py reports it as `fast_low_memory_s` beside the default's time. Memory
"balanced" pays it only where it is small: the text encoders and the VAE, which run once per image,
are stored this way ("fp16_encoder_storage" in provenance) and the UNet, run at every step, keeps
float32 weights and the CPU optimizations.

Like prepack, the swapped layers hold their weights outside the module's parameters and buffers (plain
attributes: diffusers' from_pipe casts every shared module to its dtype, which would widen buffers
for good): the model can no longer move to another device or dtype, be trained or saved. Norm layers,
biases and every other small tensor stay float32 parameters, so `model.dtype` still says float32 to
the pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.generation.heap import return_freed_memory
from studio.generation.prepack import onednn_linear

STORAGE_DTYPE = torch.float16


class HalfStoredLinear(nn.Module):
    """A Linear whose weight is kept in float16 and widened for each call.

    onednn=True computes it with prepack.onednn_linear (the kernel of prepack.PrepackedLinear, given the
    widened weight in PyTorch's layout): held to AVX2, a text encoder's 77-token matmuls ran about 1.3x
    faster there than in ATen's, and the results are those of the prepacked float32 layer."""

    stored_weight: torch.Tensor

    def __init__(self, linear: nn.Linear, *, onednn: bool = False) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.onednn = onednn
        self.stored_weight = linear.weight.detach().to(STORAGE_DTYPE)
        self.bias = _float32_parameter(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.stored_weight.to(x.dtype)
        if self.onednn:
            return onednn_linear(x, weight, self.bias)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        kernel = ", oneDNN" if self.onednn else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, float16 storage{kernel}"


class HalfStoredConv2d(nn.Module):
    """A Conv2d (zero, numeric padding) whose weight is kept in float16 and widened for each call."""

    stored_weight: torch.Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.padding = tuple(int(side) for side in conv.padding)  # numeric only: see _swappable
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.stored_weight = conv.weight.detach().to(STORAGE_DTYPE)
        self.bias = _float32_parameter(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.stored_weight.to(x.dtype)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def widened(self) -> nn.Conv2d:
        """The float32 Conv2d this layer computes (exact: float16 widens to float32 without rounding),
        for winograd.py, which transforms the VAE's float32 weights on the full VAE's first use."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            _pair(self.kernel_size),
            stride=_pair(self.stride),
            padding=_pair(self.padding),
            dilation=_pair(self.dilation),
            groups=self.groups,
            bias=self.bias is not None,
            device="meta",  # no memory until the weights below are set
        )
        conv.weight = nn.Parameter(self.stored_weight.to(torch.float32), requires_grad=False)
        conv.bias = self.bias
        return conv.eval()

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, float16 storage"


class HalfStoredEmbedding(nn.Module):
    """An Embedding table kept in float16: only the rows looked up are widened."""

    stored_weight: torch.Tensor

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.num_embeddings = embedding.num_embeddings
        self.embedding_dim = embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.stored_weight = embedding.weight.detach().to(STORAGE_DTYPE)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.stored_weight, self.padding_idx).to(torch.float32)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, float16 storage"


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    first, second = values  # a Conv2d's sizes: always two
    return first, second


def _float32_parameter(tensor: torch.Tensor | None) -> nn.Parameter | None:
    return None if tensor is None else nn.Parameter(tensor.detach().to(torch.float32), requires_grad=False)


# Smaller embedding tables stay float32: they save little, and some models read a small table's
# `.weight` directly (CLIP's position embedding, for its length).
MIN_STORED_EMBEDDING_BYTES = 4 << 20


def _swappable(module: nn.Module) -> bool:
    if type(module) is nn.Conv2d:
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)  # "same" needs the input
    if type(module) is nn.Embedding:
        return module.max_norm is None and module.weight.numel() * 4 >= MIN_STORED_EMBEDDING_BYTES
    return type(module) is nn.Linear


def store_half(model: nn.Module, *, onednn_linears: bool = False) -> int:
    """Keep the weights of every exact Linear, zero-padded Conv2d and Embedding of a CPU model in
    float16, computed in float32; every other floating tensor becomes float32. Returns how many
    layers were swapped (0 for a model already done). The model must be in eval mode on the CPU.
    onednn_linears computes the linears with oneDNN (where the CPU plan prepacks linears: the caller
    checks prepack.prepack_supported(torch.float32)).

    Only exact classes are swapped: a subclass may do more in forward() than the plain call."""
    names = [name for name, module in model.named_modules() if _swappable(module)]
    for qualified_name in names:
        parent_name, _, child_name = qualified_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        child = getattr(parent, child_name)
        swapped: nn.Module
        if isinstance(child, nn.Conv2d):
            swapped = HalfStoredConv2d(child)
        elif isinstance(child, nn.Embedding):
            swapped = HalfStoredEmbedding(child)
        else:
            swapped = HalfStoredLinear(child, onednn=onednn_linears)
        setattr(parent, child_name, swapped)
        del child, swapped
    # What a float16-streamed model still holds in float16 (norms, biases, other parameters) is small:
    # float32 keeps the arithmetic float32 and model.dtype truthful.
    for module in model.modules():
        if isinstance(module, (HalfStoredLinear, HalfStoredConv2d, HalfStoredEmbedding)):
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if param.is_floating_point() and param.dtype != torch.float32:
                setattr(module, name, nn.Parameter(param.detach().to(torch.float32), requires_grad=False))
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer.is_floating_point() and buffer.dtype != torch.float32:
                setattr(module, name, buffer.to(torch.float32))
    return_freed_memory()
    return len(names)
