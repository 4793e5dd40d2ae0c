"""The CPU speed-ups: prepacked oneDNN weights and attention in blocks of queries.

Each must compute what the stock PyTorch / diffusers module computes (to the last bits of bf16), and
the engine must record which were on, since they change those last bits."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock
from torch import nn

from studio.generation import Engine, GenerationRequest
from studio.generation import attention as blocked
from studio.generation.attention import BlockedAttnProcessor, blocked_attention
from studio.generation.cpu import CpuCapabilities, cpu_capabilities, plan_for
from studio.generation.fusion import Conv2dReLU, FusedTinyBlock, fuse_conv_relu
from studio.generation.prepack import (
    PrepackedConv2d,
    PrepackedLinear,
    SizePackedConv2d,
    prepack,
    prepack_supported,
)
from tests.fixtures.generation import float32_and_native_bf16, tiny_model_optimizations

needs_onednn = pytest.mark.skipif(not prepack_supported(torch.float32), reason="this PyTorch build has no oneDNN")
# oneDNN's bf16 kernels need AVX512BW/VL/DQ or AVX-NE-CONVERT; the float32 cases run everywhere.
DTYPES = [
    torch.float32,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(
            not prepack_supported(torch.bfloat16), reason="this CPU cannot run oneDNN's bf16 kernels (AVX2 only)"
        ),
    ),
]
# bf16 keeps 8 bits of mantissa: two roundings apart is a few parts in a thousand of the magnitude.
TOLERANCE = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2}}


@needs_onednn
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=6, out_channels=10, kernel_size=3, padding=1),
        dict(in_channels=6, out_channels=10, kernel_size=3, padding=1, stride=2, bias=False),  # downsampler
        dict(in_channels=6, out_channels=10, kernel_size=(3, 5), padding=(0, 2)),
    ],
)
def test_prepacked_conv_computes_what_the_plain_conv_computes(dtype, conv):
    torch.manual_seed(0)
    plain = nn.Conv2d(**conv).to(dtype).eval()
    x = torch.randn(2, 6, 17, 19, dtype=dtype)
    with torch.inference_mode():
        expected = plain(x)
        packed = PrepackedConv2d(plain)(x)
        from_nhwc = PrepackedConv2d(plain)(x.to(memory_format=torch.channels_last))

    torch.testing.assert_close(packed, expected, **TOLERANCE[dtype])
    torch.testing.assert_close(from_nhwc, expected, **TOLERANCE[dtype])


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_size_packed_conv_computes_what_the_plain_conv_computes_at_every_size_it_meets(bias):
    """Packed for the first input's size, packed again for the next size and again on the way back:
    the weight survives each repacking (it is rebuilt from the packed one, not kept twice)."""
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 24, 3, padding=1, bias=bias).eval()
    packed = SizePackedConv2d(plain)
    inputs = [torch.randn(1, 16, 12, 12), torch.randn(1, 16, 20, 8), torch.randn(2, 16, 12, 12)]
    with torch.inference_mode():
        for x in [*inputs, inputs[0]]:
            torch.testing.assert_close(packed(x), plain(x), **TOLERANCE[torch.float32])
            assert packed.packed_for == list(x.shape)
        assert packed.weight.is_mkldnn
        assert torch.equal(packed.weight.to_dense(), plain.weight)


def test_prepack_by_size_swaps_only_the_3x3_convolutions():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8 * 25, 3)).eval()

    assert prepack(model, convs=False, linears=False, convs_by_size=True) == 1

    assert isinstance(model[0], SizePackedConv2d)
    assert type(model[1]) is nn.Conv2d  # 1x1: left alone, as prepack always does
    assert type(model[3]) is nn.Linear


@needs_onednn
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_prepacked_linear_computes_what_the_plain_linear_computes(dtype, bias):
    torch.manual_seed(0)
    plain = nn.Linear(24, 40, bias=bias).to(dtype).eval()
    with torch.inference_mode():
        for shape in [(3, 24), (2, 77, 24), (1, 1, 24)]:  # any leading dims and token counts
            x = torch.randn(*shape, dtype=dtype)
            torch.testing.assert_close(PrepackedLinear(plain)(x), plain(x), **TOLERANCE[dtype])


@needs_onednn
def test_prepack_swaps_plain_convs_and_linears_and_leaves_the_rest_alone():
    class ScaledLinear(nn.Linear):  # a subclass may do more in forward() than oneDNN's call would
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Conv2d(8, 8, 1),  # 1x1: oneDNN picks a slow layout for it without the input size
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),  # not zero padding
        nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 5)),
        ScaledLinear(5, 5),
    ).eval()
    x = torch.randn(1, 4, 4, 4)
    with torch.inference_mode():
        expected = model(x)
        swapped = prepack(model)
        got = model(x)

    assert swapped == 2
    assert [type(m) for m in (model[0], model[1], model[2], model[3][1], model[4])] == [
        PrepackedConv2d,
        nn.Conv2d,
        nn.Conv2d,
        PrepackedLinear,
        ScaledLinear,
    ]
    torch.testing.assert_close(got, expected, **TOLERANCE[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocked_attention_equals_sdpa_across_blocks_and_a_short_last_block(dtype, monkeypatch):
    # Blocks of 48 queries over 400: eight full blocks and one of 16.
    monkeypatch.setattr(blocked, "BLOCK_BYTES", 2 * 3 * 48 * 300 * torch.tensor([], dtype=dtype).element_size())
    torch.manual_seed(0)
    q = torch.randn(2, 3, 400, 16, dtype=dtype)
    k = torch.randn(2, 3, 300, 16, dtype=dtype)
    v = torch.randn(2, 3, 300, 16, dtype=dtype)

    got = blocked_attention(q, k, v)

    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(dtype)
    torch.testing.assert_close(got, expected, **TOLERANCE[dtype])


def _with_processor(attn: Attention, processor, *args, **kwargs) -> torch.Tensor:
    attn.set_processor(processor)
    with torch.inference_mode():
        return attn(*args, **kwargs)


@pytest.mark.parametrize(
    "case",
    ["unet_self_attention", "unet_cross_attention", "vae_mid_block_attention", "masked_attention"],
)
def test_blocked_processor_gives_what_diffusers_sdpa_processor_gives(case):
    torch.manual_seed(0)
    tokens = blocked.MIN_KEYS + 100  # long enough for the blocked path
    if case == "unet_self_attention":
        attn = Attention(query_dim=32, heads=2, dim_head=16)
        args, kwargs = (torch.randn(1, tokens, 32),), {}
    elif case == "unet_cross_attention":  # 77 text tokens: SDPA
        attn = Attention(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16)
        args, kwargs = (torch.randn(1, tokens, 32),), {"encoder_hidden_states": torch.randn(1, 77, 24)}
    elif case == "vae_mid_block_attention":  # a feature map, group norm, residual: as AutoencoderKL builds it
        attn = Attention(
            query_dim=32,
            heads=1,
            dim_head=32,
            norm_num_groups=4,
            residual_connection=True,
            bias=True,
            upcast_softmax=True,
            _from_deprecated_attn_block=True,
        )
        args, kwargs = (torch.randn(1, 32, 48, 48),), {}
    else:  # a mask: SDPA
        attn = Attention(query_dim=32, heads=2, dim_head=16)
        mask = torch.zeros(1, tokens)
        mask[:, : tokens // 2] = -10000.0
        args, kwargs = (torch.randn(1, tokens, 32),), {"attention_mask": mask}
    attn.eval()

    expected = _with_processor(attn, AttnProcessor2_0(), *args, **kwargs)
    got = _with_processor(attn, BlockedAttnProcessor(), *args, **kwargs)

    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOLERANCE[torch.float32])


def _engine(tiny_model_settings, dtype: str, optimizations: bool) -> Engine:
    # max_side 768: a 768x768 image puts 48x48 = 2304 tokens through the tiny UNet's attention.
    return Engine(
        tiny_model_settings.model_copy(update={"dtype": dtype, "cpu_optimizations": optimizations, "max_side": 768})
    )


@pytest.mark.parametrize(
    ("dtype", "max_level_difference"),
    [
        ("float32", 1),
        pytest.param(
            "bfloat16",
            16,  # bf16 rounding moves a pixel by a level or two, never the composition
            marks=pytest.mark.skipif(
                not cpu_capabilities().native_bf16,
                reason="this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 gets no optimizations there",
            ),
        ),
    ],
)
def test_engine_on_cpu_is_reproducible_with_optimizations_records_them_and_matches_stock_kernels(
    tiny_model_settings, dtype, max_level_difference
):
    request = GenerationRequest(prompt="a red fox in the snow", seed=5, width=768, height=768, preset="quality")
    optimized = _engine(tiny_model_settings, dtype, optimizations=True)
    first = optimized.generate(request)
    again = optimized.generate(request)
    stock = _engine(tiny_model_settings, dtype, optimizations=False).generate(request)

    plan = plan_for(getattr(torch, dtype))
    assert first.png == again.png
    assert first.record["cpu_optimizations"] == tiny_model_optimizations(getattr(torch, dtype))
    pipe = optimized._model.pipe
    processors = [*pipe.unet.attn_processors.values(), *pipe.vae.attn_processors.values()]
    assert processors
    assert all(isinstance(p, BlockedAttnProcessor) == plan.blocked_attention for p in processors)
    packed = [m for m in pipe.unet.modules() if isinstance(m, PrepackedConv2d | PrepackedLinear)]
    assert bool(packed) == (plan.prepack_convs or plan.prepack_linears)
    assert stock.record["cpu_optimizations"] == []
    pixels = np.asarray(first.image, dtype=np.int16)
    stock_pixels = np.asarray(stock.image, dtype=np.int16)
    assert np.abs(pixels - stock_pixels).mean() < 1.0
    assert np.abs(pixels - stock_pixels).max() <= max_level_difference


@needs_onednn
@pytest.mark.parametrize("dtype", float32_and_native_bf16("this CPU has no native bf16: bf16 gets no optimizations"))
def test_channels_last_unet_runs_its_convolutions_on_nhwc_activations_and_keeps_the_image(tiny_model_settings, dtype):
    """The UNet gets its latents in channels-last layout however the pipeline passes them (positional
    or keyword `sample`), so its convolutions read NHWC; the image is the one made without it, to
    within the rounding that provenance's name for it admits."""
    torch_dtype = getattr(torch, dtype)
    if not plan_for(torch_dtype).channels_last_unet:
        pytest.skip(f"channels_last_unet is not planned for {dtype} on this CPU class")
    request = GenerationRequest(prompt="a red fox in the snow", seed=5, width=256, height=256)
    settings = tiny_model_settings.model_copy(update={"dtype": dtype})
    engine = Engine(settings)
    without = Engine(settings, skip_cpu_optimizations=["channels_last_unet"])
    engine.load()
    unet = engine._model.pipe.unet
    layouts: list[bool] = []
    unet.conv_in.register_forward_hook(
        lambda module, args, out: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )

    result = engine.generate(request)
    with torch.inference_mode():
        latents = torch.randn(1, unet.config.in_channels, 32, 32, dtype=torch_dtype)
        context = torch.randn(1, 77, unet.config.cross_attention_dim, dtype=torch_dtype)
        unet(sample=latents, timestep=torch.tensor([999]), encoder_hidden_states=context)
    reference = without.generate(request)

    assert len(layouts) >= 2  # the pipeline's calls and the keyword call
    assert all(layouts)
    assert "channels_last_unet" in result.record["cpu_optimizations"]
    assert "channels_last_unet" not in reference.record["cpu_optimizations"]
    difference = np.abs(np.asarray(result.image, dtype=np.int16) - np.asarray(reference.image, dtype=np.int16))
    assert difference.max() <= (1 if dtype == "float32" else 16)


def _caps(aten: str, flags: tuple[str, ...], onednn_bf16: bool, amx: bool = False) -> CpuCapabilities:
    return CpuCapabilities(
        machine="x86_64",
        model_name="test CPU",
        flags=flags,
        aten_capability=aten,
        onednn=True,
        onednn_bf16=onednn_bf16,
        amx=amx,
    )


ZEN3 = _caps("AVX2", ("avx2", "fma"), onednn_bf16=False)
ZEN4 = _caps("AVX512", ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"), onednn_bf16=True)
SKYLAKE_X = _caps("AVX512", ("avx2", "fma", "avx512f", "avx512bw"), onednn_bf16=True)  # bf16 emulated by oneDNN
SAPPHIRE_RAPIDS = _caps(
    "AVX512", ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile"), onednn_bf16=True, amx=True
)


@pytest.mark.parametrize(
    ("caps", "dtype", "names", "warned"),
    [
        # Prepacked 3x3 convolutions were slower on AVX2.
        # and so were prepacked ones of any size packed without the input's size: packed for it, they pay.
        (
            ZEN3,
            torch.float32,
            [
                "onednn_prepack_linear",
                "onednn_prepack_conv_by_size",
                "winograd_conv",
                "fused_conv_relu",
                "channels_last_unet",
            ],
            False,
        ),
        (ZEN3, torch.bfloat16, [], True),  # oneDNN's bf16 reorder would raise: stock kernels, and a warning
        (ZEN4, torch.float32, ["onednn_prepack", "winograd_conv", "fused_conv_relu", "channels_last_unet"], False),
        (
            ZEN4,
            torch.bfloat16,
            ["onednn_prepack", "blocked_attention", "fused_conv_relu", "channels_last_unet"],
            False,
        ),
        (SKYLAKE_X, torch.bfloat16, [], True),  # no native bf16: slower than fp32, 'auto' never picks it
        # SDPA uses the AMX tiles itself; channels-last is not measured there yet.
        (SAPPHIRE_RAPIDS, torch.bfloat16, ["onednn_prepack", "fused_conv_relu"], False),
        (ZEN4, torch.float16, [], True),
    ],
)
def test_each_cpu_class_gets_only_the_optimizations_it_can_run_and_that_pay(caps, dtype, names, warned):
    plan = plan_for(dtype, caps)
    assert plan.names == names
    assert bool(plan.warnings) == warned
    assert plan_for(dtype, caps, optimize=False).names == []
    assert plan_for(dtype, caps, optimize=False).warnings == plan.warnings


@pytest.mark.parametrize("caps", [ZEN3, ZEN4])
def test_balanced_memory_keeps_the_plan_with_winograd_f2_for_the_denoiser(caps):
    """Memory 'balanced' (float16 text encoders and VAE): the denoiser keeps every optimization, its
    Winograd convolutions as F(2x2,3x3), and provenance names both."""
    speed = plan_for(torch.float32, caps)
    balanced = plan_for(torch.float32, caps, encoder_weight_dtype=torch.float16)

    assert balanced.winograd_f2
    assert not speed.winograd_f2
    expected = [("winograd_conv_f2" if name == "winograd_conv" else name) for name in speed.names]
    assert balanced.names == [*expected, "fp16_encoder_storage"]
    assert plan_for(torch.float32, caps, encoder_weight_dtype=torch.float16, without=["winograd_convs"]).names == [
        name for name in speed.names if name != "winograd_conv"
    ] + ["fp16_encoder_storage"]


@pytest.mark.skipif(
    os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2",
    reason="runs when make test holds oneDNN and ATen to the AVX2 class (ONEDNN_MAX_CPU_ISA=AVX2)",
)
def test_the_isa_limits_make_this_process_an_avx2_machine():
    """make test reruns the generation tests with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2: this
    proves those variables took effect, so the AVX2 path really ran on a bigger CPU."""
    caps = cpu_capabilities()
    assert caps.aten_capability == "AVX2"
    assert not caps.onednn_bf16
    assert not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert caps.cpu_class == "avx2"
    assert not caps.native_bf16
    assert plan_for(torch.bfloat16).names == []


@needs_onednn
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [(8, 8), (4, 8)])  # the encoder's blocks change channels (1x1 skip)
def test_fused_tiny_autoencoder_block_computes_what_diffusers_block_computes(dtype, channels):
    torch.manual_seed(0)
    block = AutoencoderTinyBlock(*channels, act_fn="relu").to(dtype).eval()
    fused_block = FusedTinyBlock(block)
    pair = nn.Sequential(nn.Conv2d(channels[0], 8, 3, padding=1), nn.ReLU()).to(dtype).eval()
    fused_pair = Conv2dReLU(pair[0])
    x = torch.randn(1, channels[0], 33, 31, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fused_block(x), block(x), **TOLERANCE[dtype])
        torch.testing.assert_close(fused_pair(x), pair(x), **TOLERANCE[dtype])


@needs_onednn
def test_fuse_conv_relu_swaps_every_pair_of_the_tiny_autoencoder_and_decodes_the_same(tiny_autoencoder_dir):
    stock = AutoencoderTiny.from_pretrained(tiny_autoencoder_dir).eval()
    fused = AutoencoderTiny.from_pretrained(tiny_autoencoder_dir).eval()
    blocks = sum(isinstance(m, AutoencoderTinyBlock) for m in fused.modules())

    swapped = fuse_conv_relu(fused)

    assert blocks
    assert not any(isinstance(m, AutoencoderTinyBlock) for m in fused.modules())
    assert not any(type(m) is nn.ReLU for m in fused.decoder.modules())
    assert swapped >= 3 * blocks
    assert fuse_conv_relu(fused) == 0  # nothing left to fuse
    latents = torch.randn(1, 4, 12, 10)
    image = torch.rand(1, 3, 96, 80) * 2 - 1
    with torch.inference_mode():
        # oneDNN may pick another kernel with post-ops attached: the last bits can differ.
        torch.testing.assert_close(
            fused.decode(latents).sample, stock.decode(latents).sample, **TOLERANCE[torch.float32]
        )
        torch.testing.assert_close(fused.encode(image).latents, stock.encode(image).latents, **TOLERANCE[torch.float32])
