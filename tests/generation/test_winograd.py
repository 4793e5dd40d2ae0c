"""Winograd convolutions compute what F.conv2d computes, up to float32 rounding.

The bound: each output differs from the direct convolution by less than TOLERANCE times the largest
output magnitude. A wrong transform coefficient gives errors of the order of the outputs themselves,
so the bound separates a right implementation from a wrong one by four orders of magnitude."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from studio.generation.winograd import F2, F4, WinogradConv2d, transform_weight, winograd_convs

# Measured at these sizes: F4 up to 4e-6, F2 up to 6e-7 of the largest output (direct float32 itself
# differs from a float64 reference by about 3e-7).
TOLERANCE = {"F(4x4,3x3)": 3e-5, "F(2x2,3x3)": 5e-6}


def assert_matches_direct(actual: torch.Tensor, expected: torch.Tensor, scheme) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=TOLERANCE[scheme.name] * scale)


@pytest.mark.parametrize("scheme", [F4, F2], ids=["F4", "F2"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "height", "width", "bias"),
    [(3, 5, 8, 8, True), (8, 16, 13, 7, False), (32, 24, 17, 19, True), (64, 70, 5, 6, True), (4, 4, 1, 1, True)],
)
def test_winograd_conv_computes_what_the_direct_conv_computes(
    scheme, channels_last, in_channels, out_channels, height, width, bias
):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias).eval()
    x = torch.randn(2, in_channels, height, width)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        bias64 = None if conv.bias is None else conv.bias.double()
        expected = F.conv2d(x.double(), conv.weight.double(), bias64, padding=1)
        actual = WinogradConv2d(conv, scheme)(x)
    assert actual.dtype == torch.float32
    assert actual.shape == expected.shape
    assert_matches_direct(actual.double(), expected, scheme)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    assert actual.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("scheme", [F4, F2], ids=["F4", "F2"])
def test_chunks_of_tile_rows_give_the_same_result_as_one_chunk(scheme):
    """11 rows of tiles in chunks of 1 (the smallest chunk): every chunk boundary and a short last chunk."""
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 7, 3, padding=1).eval()
    x = torch.randn(2, 6, scheme.m * 10 + 1, 9)
    with torch.inference_mode():
        whole = WinogradConv2d(conv, scheme, chunk_bytes=2**30)(x)
        chunked = WinogradConv2d(conv, scheme, chunk_bytes=1)(x)
        expected = conv(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    assert_matches_direct(chunked, expected, scheme)


def test_the_transformed_weight_is_the_layout_the_gemms_take():
    conv = nn.Conv2d(5, 7, 3, padding=1)
    u = transform_weight(conv.weight, F4)
    assert u.shape == (36, 5, 7)
    assert u.is_contiguous()
    # The centre of the kernel transform's corners: G[0] = (1/4, 0, 0), G[5] = (0, 0, 1).
    torch.testing.assert_close(u[0], conv.weight[:, :, 0, 0].t() / 16, rtol=1e-6, atol=0)
    torch.testing.assert_close(u[35], conv.weight[:, :, 2, 2].t(), rtol=0, atol=0)


def test_small_inputs_fall_back_to_the_direct_conv_when_asked():
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    winograd = WinogradConv2d(conv, F4, fallback_below_pixels=64)
    small, large = torch.randn(1, 8, 7, 9), torch.randn(1, 8, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(winograd(small), F.conv2d(small, conv.weight, conv.bias, padding=1), rtol=0, atol=0)
        assert_matches_direct(winograd(large), conv(large), F4)
    assert WinogradConv2d(conv, F4).weight is None  # without a fallback the original weight is not kept


def test_ineligible_convs_and_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="stride"):
        WinogradConv2d(nn.Conv2d(8, 8, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="float32"):
        WinogradConv2d(nn.Conv2d(8, 8, 3, padding=1).to(torch.bfloat16))
    winograd = WinogradConv2d(nn.Conv2d(8, 8, 3, padding=1))
    with pytest.raises(ValueError, match=r"float32 \(N, 8, H, W\)"):
        winograd(torch.randn(1, 4, 8, 8))


class NotPlainConv(nn.Conv2d):
    """A subclass may do more in forward than its weights say: never replaced."""


def test_only_eligible_convs_are_swapped():
    model = nn.ModuleDict(
        {
            "eligible": nn.Conv2d(64, 64, 3, padding=1),
            "eligible_no_bias": nn.Conv2d(64, 128, 3, padding=1, bias=False),
            "too_few_in": nn.Conv2d(4, 64, 3, padding=1),  # like the VAE's conv_in
            "too_few_out": nn.Conv2d(64, 3, 3, padding=1),  # like the VAE's conv_out
            "pointwise": nn.Conv2d(64, 64, 1),
            "strided": nn.Conv2d(64, 64, 3, stride=2, padding=1),
            "grouped": nn.Conv2d(64, 64, 3, padding=1, groups=2),
            "dilated": nn.Conv2d(64, 64, 3, padding=2, dilation=2),
            "unpadded": nn.Conv2d(64, 64, 3),
            "reflect": nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"),
            "subclass": NotPlainConv(64, 64, 3, padding=1),
            "bf16": nn.Conv2d(64, 64, 3, padding=1).to(torch.bfloat16),
            "big": nn.Conv2d(256, 256, 3, padding=1),  # 2.25 MB of weight
            "nested": nn.Sequential(nn.SiLU(), nn.Conv2d(128, 64, 3, padding=1)),
        }
    )
    swapped = winograd_convs(model, min_channels=64, max_weight_bytes=2**21)
    replaced = {name for name, module in model.named_modules() if isinstance(module, WinogradConv2d)}
    assert replaced == {"eligible", "eligible_no_bias", "nested.1"}
    assert swapped == 3
    assert winograd_convs(model, min_channels=64) == 1  # the big one, once the weight limit is lifted
    assert isinstance(model["big"], WinogradConv2d)


@pytest.mark.parametrize("scheme", [F4, F2], ids=["F4", "F2"])
def test_a_small_vae_decodes_nearly_the_same_image_swapped(scheme):
    torch.manual_seed(3)
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    ).eval()
    latents = torch.randn(1, 4, 9, 11).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = vae.decode(latents).sample
        swapped = winograd_convs(vae.decoder, scheme=scheme, min_channels=16)
        actual = vae.decode(latents).sample
    # conv_in (4 channels in) and conv_out (3 out) stay; the others are the 3x3 convs of the mid and up blocks.
    assert swapped == sum(isinstance(module, WinogradConv2d) for module in vae.decoder.modules()) > 4
    assert not isinstance(vae.decoder.conv_in, WinogradConv2d)
    assert not isinstance(vae.decoder.conv_out, WinogradConv2d)
    assert actual.shape == expected.shape == (1, 3, 18, 22)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * expected.abs().max().item())
