"""oneDNN weight prepacking: CPU inference without a weight reorder in every call.

On CPU, PyTorch hands a convolution's or linear layer's weights to oneDNN in PyTorch's plain layout,
and oneDNN reorders them into its own blocked layout on every call. Where the activations are small
beside the weights, as in the UNet's 8x8 and 16x16 blocks with 30-60 MB of weights per convolution,
that reorder costs several times the arithmetic: a 2560->1280 3x3 convolution on an 8x8 bf16
activation took 26 ms plain and 4.5 ms prepacked on an AVX512-BF16 CPU, and inside the UNet, where
each reorder also faults in fresh pages, it took 100 ms.

Prepacking reorders each weight once, at load, and calls the oneDNN kernels PyTorch's own inductor
uses for frozen CPU graphs (`mkldnn._convolution_pointwise`, `mkldnn._linear_pointwise`). The
arithmetic is oneDNN's in both cases; results may differ from the plain path in the last bit of a
bf16 value, which is why an image's provenance lists "onednn_prepack" in its cpu_optimizations.

1x1 convolutions are left alone: packed without knowing the activation's size, oneDNN picks a layout
for them that ran up to 80x slower, and their small weights cost little to reorder anyway.

The packed weights are oneDNN tensors held outside the module's parameters: the model can no longer
move to another device or dtype, be trained or saved. The engine packs a model it has just loaded for
the CPU and never does any of those with it.
"""

from __future__ import annotations

import torch
from torch import nn

from studio.generation.cpu import cpu_capabilities
from studio.generation.heap import FreedMemoryReturner, return_freed_memory

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


def prepack_supported(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build and this CPU can run prepacked oneDNN kernels in dtype.

    The ops existing is not enough: oneDNN's bf16 weight reorder needs AVX512BW/VL/DQ or AVX-NE-CONVERT
    and raises on an AVX2-only CPU."""
    if dtype not in PACKABLE_DTYPES or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16 and not cpu_capabilities().onednn_bf16:
        return False
    try:
        return bool(torch.ops.mkldnn._convolution_pointwise.default and torch.ops.mkldnn._linear_pointwise.default)
    except (AttributeError, RuntimeError):  # a build without these ops
        return False


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's matmul x @ weight.T + bias, with weight packed (PrepackedLinear) or in PyTorch's layout
    (half_storage.HalfStoredLinear's widened one): the same kernel and the same results either way."""
    out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return out


class OneDnnConv2d(nn.Module):
    """A Conv2d's geometry and bias, for the layers here and in fusion.py that call oneDNN's convolution
    themselves with weights they hold in their own form. Zero, numeric padding only (never "same"): the
    code that swaps a layer in checks it."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.padding = [int(side) for side in conv.padding]
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, activation: str = "none") -> torch.Tensor:
        """oneDNN's convolution of x with weight (plain or packed) and this layer's bias, with an
        element-wise activation applied as the output is written ("relu"), or none."""
        out: torch.Tensor = torch.ops.mkldnn._convolution_pointwise(
            x, weight, self.bias, self.padding, self.stride, self.dilation, self.groups, activation, [], ""
        )
        return out


class PrepackedConv2d(OneDnnConv2d):
    """A Conv2d whose weight was reordered once into oneDNN's layout (zero padding only)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        with torch.no_grad():
            self.packed_weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                conv.weight.detach().to_mkldnn(), self.padding, self.stride, self.dilation, self.groups
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.packed_weight)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, prepacked"


class PrepackedLinear(nn.Module):
    """A Linear whose weight was reordered once into oneDNN's layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        with torch.no_grad():
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return onednn_linear(x, self.packed_weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, prepacked"


class SizePackedConv2d(OneDnnConv2d):
    """A Conv2d whose weight is reordered for the input size it is called with, and again when that
    size changes.

    On AVX2, oneDNN chooses a convolution's weight layout by the input's size as well as the weight's:
    packed without it, some UNet convolutions ran 3-6x slower than plain (1920->1280 at 16x16: 1.67 s
    against 0.30 s), and packed for twice the size just as slow; packed for their own size, every one
    measured was faster than plain (the same: 0.18 s; 1280->1280 at 16x16 0.065 against 0.109 s;
    2560->1280 at 8x8 0.028 against 0.086 s). On AVX-512 the layout does not depend on the size
    (PrepackedConv2d is used there). The first call at a size reorders the weight once (up to about
    75 ms for the UNet's largest); the plain weight is not kept beside the packed one (the same
    memory as plain), but rebuilt from it on a size change."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        self.weight: torch.Tensor = conv.weight.detach()  # plain until the first call, then packed for `packed_for`
        self.packed_for: list[int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = list(x.shape)
        if self.packed_for != size:
            # Two copies of the weight at most while repacking: the old form is let go first.
            source = (self.weight.to_dense() if self.packed_for is not None else self.weight).to_mkldnn()
            del self.weight
            # The stubs lack the input_size argument inductor passes too.
            self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
                source, self.padding, self.stride, self.dilation, self.groups, size
            )
            del source
            self.packed_for = size
            return_freed_memory()  # once per convolution and size: the old form's memory goes back
        return self.convolve(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, packed for {self.packed_for}"


def _packable_conv(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)  # "same"/"valid" need the input size
        and module.kernel_size != (1, 1)
    )


def prepack(model: nn.Module, *, convs: bool = True, linears: bool = True, convs_by_size: bool = False) -> int:
    """Swap every packable Conv2d and/or Linear of a CPU model for its prepacked form; returns how many.

    convs_by_size packs convolutions for the input size they are called with (SizePackedConv2d: what
    AVX2 needs) instead of once at load. Only exact nn.Conv2d and nn.Linear are swapped: a subclass may
    do more in forward() than the oneDNN call would. The model must be in eval mode on the CPU in a
    dtype prepack_supported() allows."""
    # Names, not modules: a list of the old modules would keep every replaced weight alive until the
    # end, and the process would briefly hold the model twice.
    names = [
        name
        for name, module in model.named_modules()
        if ((convs or convs_by_size) and _packable_conv(module)) or (linears and type(module) is nn.Linear)
    ]
    returner = FreedMemoryReturner()
    for qualified_name in names:
        parent_name, _, child_name = qualified_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        child = getattr(parent, child_name)
        packed: nn.Module
        if isinstance(child, nn.Conv2d):
            packed = SizePackedConv2d(child) if convs_by_size else PrepackedConv2d(child)
        else:
            packed = PrepackedLinear(child)
        setattr(parent, child_name, packed)
        weight = None if convs_by_size and isinstance(child, nn.Conv2d) else child.weight  # by size: kept
        del child, packed
        returner.replaced(weight)
        del weight
    return_freed_memory()
    return len(names)
