"""Convolutions with their ReLU (and residual sum) in one oneDNN call, for the tiny autoencoder.

Why: TAESD, the `fast` preset's decoder, is 64-channel 3x3 convolutions at up to 512x512, each
followed by a ReLU, and a residual sum every third. On its own each ReLU and sum is one more pass
over a 64 MiB activation: 17% of a 512x512 decode on a 2-core Zen 4 held to AVX2 (ReLU 12%, sum 5%).
oneDNN applies both inside the convolution as it writes its output (post-ops), as PyTorch's own
inductor does for frozen CPU graphs (`mkldnn._convolution_pointwise`): a 64-channel 3x3 convolution
and ReLU at 512x512 took 270 ms unfused and 216 ms fused, with the residual sum 316 and 242 ms.

The arithmetic is oneDNN's convolution either way, but with post-ops attached oneDNN may choose
another kernel (at TAESD's 64 channels the float32 results were identical, at 8 channels they
differed in the last bits), so an image's provenance names "fused_conv_relu" among its
cpu_optimizations.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock
from torch import nn

from studio.generation.prepack import OneDnnConv2d


def _fusable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)  # "same" needs the input size
    )


class _FusedConv(OneDnnConv2d):
    """A convolution's weights and geometry held as this module's own (not as a child Conv2d, which
    prepacking would swap from under the fused call). Numeric padding only: see _fusable."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        self.weight = conv.weight


class Conv2dReLU(_FusedConv):
    """relu(conv(x)) in one oneDNN call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.weight, "relu")


class Conv2dAddReLU(_FusedConv):
    """relu(conv(x) + other) in one oneDNN call."""

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "add", None, "relu", [], "",
        )  # fmt: skip
        return out


class FusedTinyBlock(nn.Module):
    """diffusers' AutoencoderTinyBlock, relu(conv(x) + skip(x)), with each ReLU and the sum inside a
    convolution."""

    def __init__(self, block: AutoencoderTinyBlock) -> None:
        super().__init__()
        first, _, second, _, last = block.conv
        self.first = Conv2dReLU(first)
        self.second = Conv2dReLU(second)
        self.last = Conv2dAddReLU(last)
        self.skip = block.skip  # Identity, or a 1x1 convolution where the channels change

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.last(self.second(self.first(x)), self.skip(x))
        return out


def _fusable_block(module: nn.Module) -> bool:
    if type(module) is not AutoencoderTinyBlock or len(module.conv) != 5:
        return False
    first, act1, second, act2, last = module.conv
    return (
        all(_fusable(conv) for conv in (first, second, last))
        and all(type(act) is nn.ReLU for act in (act1, act2, module.fuse))
        and (type(module.skip) is nn.Identity or type(module.skip) is nn.Conv2d)
    )


def fuse_conv_relu(model: nn.Module) -> int:
    """Swap the tiny autoencoder's conv+ReLU pairs and residual blocks for fused ones; returns how many
    convolutions now carry their ReLU. The model must be in eval mode on the CPU, in a dtype oneDNN
    runs there (float32, or bfloat16 with native bf16)."""
    fused = 0
    blocks = [name for name, module in model.named_modules() if _fusable_block(module)]
    for qualified_name in blocks:
        parent_name, _, child_name = qualified_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        parent.add_module(child_name, FusedTinyBlock(getattr(parent, child_name)))
        fused += 3
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv = module[index]
            if isinstance(conv, nn.Conv2d) and _fusable(conv) and type(module[index + 1]) is nn.ReLU:
                module[index] = Conv2dReLU(conv)
                module[index + 1] = nn.Identity()
                fused += 1
    return fused
