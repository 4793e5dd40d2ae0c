"""STUDIO_MODEL__MEMORY=balanced: the denoiser in float32 with every CPU optimization of 'speed', the
text encoders and the VAE (run once per image) kept in float16 and computed in float32, and the
denoiser's Winograd convolutions as F(2x2,3x3) (16/9 of their weights' memory instead of 4x).

What users rely on: the UNet runs 'speed''s layers, the once-per-image parts stay half for good (no
later request widens them), the image is 'speed''s up to the float16 rounding of those parts' weights
(exactly the same on float16-valued files) and the Winograd schemes' last bits, provenance says so,
and 'auto' picks it on machines with enough RAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from studio.config import ModelSettings
from studio.generation import Engine, GenerationRequest
from studio.generation.cpu import plan_for
from studio.generation.devices import (
    LOW_MEMORY_BELOW_BYTES,
    Placement,
    resolve_encoder_weight_dtype,
    resolve_memory,
    resolve_weight_dtype,
)
from studio.generation.half_storage import HalfStoredConv2d, HalfStoredEmbedding, HalfStoredLinear, store_half
from studio.generation.loading import load_model, read_unread_vae
from studio.generation.prepack import prepack_supported
from studio.generation.winograd import F2, F4, WinogradConv2d, winograd_convs
from tests.fixtures.generation import build_tiny_pipeline, tiny_model_optimizations

HALF_STORED = (HalfStoredLinear, HalfStoredConv2d, HalfStoredEmbedding)


@pytest.fixture(scope="module")
def half_values_model_dir(tmp_path_factory: pytest.TempPathFactory, _pinned_torch_threads) -> Path:
    """The tiny model in float32 files whose text encoder and VAE hold float16-representable values:
    rounding them to float16 changes nothing, so 'balanced' must give 'speed''s pixels."""
    root = tmp_path_factory.mktemp("half-values")
    pipe = build_tiny_pipeline(root)
    for component in (pipe.vae, pipe.text_encoder):
        component.to(torch.float16).to(torch.float32)
    folder = root / "tiny-sd-turbo"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def wide_unet_model_dir(tmp_path_factory: pytest.TempPathFactory, _pinned_torch_threads) -> Path:
    """The tiny model with a UNet of 128 channels: wide enough for Winograd to take its 3x3 convolutions."""
    root = tmp_path_factory.mktemp("wide-unet")
    folder = root / "tiny-sd-turbo"
    build_tiny_pipeline(root, unet_channels=(128, 128)).save_pretrained(folder, safe_serialization=True)
    return folder


def _engine(settings: ModelSettings, **update: object) -> Engine:
    return Engine(settings.model_copy(update=update))


REQUEST = GenerationRequest(prompt="a lighthouse at dusk", seed=11, width=128, height=96, preset="fast")


def test_balanced_keeps_the_encoders_and_vae_half_and_the_unet_float32_after_every_kind_of_request(
    tiny_model_settings,
):
    """from_pipe (img2img, the other decoder) casts every shared module to its dtype: it must not widen
    the stored weights for good, and the UNet keeps 'speed''s optimized layers."""
    engine = _engine(tiny_model_settings, memory="balanced")
    speed = _engine(tiny_model_settings, memory="speed")
    first = engine.generate(GenerationRequest(prompt="a red fox", seed=1, width=64, height=64, preset="fast"))
    engine.generate(GenerationRequest(prompt="a red fox", seed=1, width=64, height=64, preset="quality"))
    engine.generate(
        GenerationRequest(
            prompt="a red fox at night", seed=2, width=64, height=64, init_image=first.image, strength=0.6
        )
    )
    speed.load()

    pipe = engine._model.pipe
    for component in (pipe.text_encoder, pipe.vae):
        swapped = [m for m in component.modules() if isinstance(m, HALF_STORED)]
        assert swapped, type(component).__name__
        assert all(m.stored_weight.dtype == torch.float16 for m in swapped)
        assert not [m for m in component.modules() if type(m) in (nn.Linear, nn.Conv2d)]
        assert component.dtype == torch.float32  # what the pipeline makes its embeddings and latents in
        assert all(p.dtype == torch.float32 for p in component.parameters())
    unet_layers = [type(m).__name__ for m in pipe.unet.modules()]
    assert unet_layers == [type(m).__name__ for m in speed._model.pipe.unet.modules()]  # speed's UNet
    assert not [m for m in pipe.unet.modules() if isinstance(m, HALF_STORED)]
    assert all(p.dtype == torch.float32 for p in pipe.unet.parameters())
    assert all(p.dtype == torch.float32 for p in engine._model.tiny_vae.parameters())


def test_balanced_image_is_speeds_image_on_float16_valued_encoder_weights(tiny_model_settings, half_values_model_dir):
    """The float16 storage is exact for values float16 holds: with the stock kernels on both sides (the
    optimized ones round in another order) the pixels are the same."""
    for preset in ("fast", "quality"):
        request = GenerationRequest(prompt="a lighthouse at dusk", seed=11, width=128, height=96, preset=preset)
        balanced = _engine(
            tiny_model_settings, model_id=str(half_values_model_dir), memory="balanced", cpu_optimizations=False
        ).generate(request)
        speed = _engine(
            tiny_model_settings, model_id=str(half_values_model_dir), memory="speed", cpu_optimizations=False
        ).generate(request)
        assert np.array_equal(np.asarray(balanced.image), np.asarray(speed.image)), preset
        assert balanced.record["cpu_optimizations"] == ["fp16_encoder_storage"]
        assert speed.record["cpu_optimizations"] == []


@pytest.mark.skipif(
    not (plan_for(torch.float32).prepack_linears and prepack_supported(torch.float32)),
    reason="oneDNN linears are planned only on x86-64 CPUs whose PyTorch has oneDNN",
)
def test_balanced_text_encoder_runs_speeds_linear_kernel_so_the_fast_image_is_speeds(
    tiny_model_settings, half_values_model_dir
):
    """The float16-stored linears of the text encoder compute on the oneDNN matmul that speed's
    prepacked ones use (held to AVX2 about 1.3x faster than ATen's at 77 tokens): on float16-valued
    weights the prompt's embeddings are speed's bit for bit, and so is the fast image (the tiny
    autoencoder and the UNet are float32 in both)."""
    settings = tiny_model_settings.model_copy(update={"model_id": str(half_values_model_dir)})
    balanced, speed = _engine(settings, memory="balanced"), _engine(settings, memory="speed")
    balanced.load()
    speed.load()
    linears = [m for m in balanced._model.pipe.text_encoder.modules() if isinstance(m, HalfStoredLinear)]
    assert linears
    assert all(m.onednn for m in linears)
    tokenizer = balanced._model.pipe.tokenizer
    ids = tokenizer("a lighthouse at dusk", padding="max_length", max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids  # fmt: skip
    with torch.inference_mode():
        embeddings = balanced._model.pipe.text_encoder(ids)[0]
        assert torch.equal(embeddings, speed._model.pipe.text_encoder(ids)[0])

    made, reference = balanced.generate(REQUEST), speed.generate(REQUEST)
    assert np.array_equal(np.asarray(made.image), np.asarray(reference.image))


# The text encoder's and VAE's float32 weights rounded to float16 (11 significant bits): measured on the
# tiny model at most 1 of 255 levels apart in any pixel, 0.015 on average (quality preset; fast 0.0003).
MAX_PIXEL_DIFFERENCE = 2
MEAN_PIXEL_DIFFERENCE = 0.05


@pytest.mark.parametrize("preset", ["fast", "quality"])
def test_balanced_image_is_close_to_speeds_and_reproducible(tiny_model_settings, preset):
    request = GenerationRequest(prompt="a lighthouse at dusk", seed=11, width=128, height=96, preset=preset)
    balanced = _engine(tiny_model_settings, memory="balanced")
    made = balanced.generate(request)
    reference = _engine(tiny_model_settings, memory="speed").generate(request)

    difference = np.abs(np.asarray(made.image, dtype=np.int16) - np.asarray(reference.image, dtype=np.int16))
    assert difference.max() <= MAX_PIXEL_DIFFERENCE
    assert difference.mean() <= MEAN_PIXEL_DIFFERENCE
    assert balanced.generate(request).png == made.png  # same seed, same bytes
    assert made.record["dtype"] == "float32"


def test_balanced_provenance_names_the_float16_storage_beside_speeds_optimizations(tiny_model_settings):
    made = _engine(tiny_model_settings, memory="balanced").generate(REQUEST)
    speed = _engine(tiny_model_settings, memory="speed").generate(REQUEST)

    assert made.record["cpu_optimizations"] == [*tiny_model_optimizations(torch.float32), "fp16_encoder_storage"]
    assert speed.record["cpu_optimizations"] == tiny_model_optimizations(torch.float32)
    assert "fp16_encoder_storage" not in speed.record["cpu_optimizations"]


@pytest.mark.skipif(
    "winograd_conv" not in plan_for(torch.float32).names, reason="Winograd is planned only on x86-64 CPUs"
)
def test_balanced_denoiser_takes_winograd_f2_and_speed_f4_and_the_images_agree(
    tiny_model_settings, wide_unet_model_dir
):
    """F(2x2,3x3) keeps 16/9 of a convolution's weights instead of F(4x4,3x3)'s 4x (0.6 GiB less for
    sd-turbo); both are within about 1e-5 of the direct convolution, so the pixels stay 'speed''s."""
    request = GenerationRequest(prompt="a lighthouse at dusk", seed=11, width=128, height=96, preset="fast")
    balanced = _engine(tiny_model_settings, model_id=str(wide_unet_model_dir), memory="balanced")
    speed = _engine(tiny_model_settings, model_id=str(wide_unet_model_dir), memory="speed")
    made, reference = balanced.generate(request), speed.generate(request)

    schemes = {
        name: {m.scheme for m in engine._model.pipe.unet.modules() if isinstance(m, WinogradConv2d)}
        for name, engine in (("balanced", balanced), ("speed", speed))
    }
    assert schemes == {"balanced": {F2}, "speed": {F4}}
    assert "winograd_conv_f2" in made.record["cpu_optimizations"]
    assert "winograd_conv" not in made.record["cpu_optimizations"]
    assert "winograd_conv" in reference.record["cpu_optimizations"]
    difference = np.abs(np.asarray(made.image, dtype=np.int16) - np.asarray(reference.image, dtype=np.int16))
    assert difference.max() <= MAX_PIXEL_DIFFERENCE
    assert difference.mean() <= MEAN_PIXEL_DIFFERENCE
    assert balanced.generate(request).png == made.png


def test_balanced_streams_the_encoders_and_vae_in_float16_and_the_unet_in_float32(tiny_model_settings):
    placement = Placement(device="cpu", dtype=torch.float32, encoder_weight_dtype=torch.float16)
    loaded = load_model(tiny_model_settings.model_copy(update={"memory": "balanced"}), placement)

    pipe = loaded.pipe
    assert {p.dtype for p in pipe.text_encoder.parameters()} == {torch.float16}
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.float32}
    assert read_unread_vae(loaded)  # the full VAE waits on disk while the tiny autoencoder decodes
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float16}


def test_winograd_takes_a_float16_stored_convolution_as_the_float32_one_it_computes():
    """The full VAE's convolutions are float16-stored in 'balanced' when the quality preset first uses it."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1)).eval()
    with torch.no_grad():
        plain[0].weight.copy_(plain[0].weight.half().float())
    stored = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1)).eval()
    stored.load_state_dict(plain.state_dict())
    store_half(stored)
    x = torch.randn(1, 128, 12, 12)

    assert winograd_convs(plain) == 1
    assert winograd_convs(stored) == 1
    assert isinstance(stored[0], WinogradConv2d)
    assert torch.equal(stored[0].transformed_weight, plain[0].transformed_weight)
    with torch.inference_mode():
        assert torch.equal(stored(x), plain(x))


GIB = 1 << 30


@pytest.mark.parametrize(
    ("memory", "device", "dtype", "ram", "expected"),
    [
        ("auto", "cpu", torch.float32, 8 * GIB, "low"),  # an 8 GiB laptop
        ("auto", "cpu", torch.float32, LOW_MEMORY_BELOW_BYTES - 1, "low"),
        ("auto", "cpu", torch.float32, LOW_MEMORY_BELOW_BYTES, "balanced"),
        ("auto", "cpu", torch.float32, 64 * GIB, "balanced"),
        ("balanced", "cpu", torch.float32, 8 * GIB, "balanced"),  # asked for: as asked
        ("speed", "cpu", torch.float32, 8 * GIB, "speed"),
        ("low", "cpu", torch.float32, 64 * GIB, "low"),
        ("balanced", "cpu", torch.bfloat16, 64 * GIB, "speed"),  # half already
        ("auto", "cpu", torch.bfloat16, 8 * GIB, "speed"),
        ("balanced", "cuda", torch.float16, 64 * GIB, "speed"),  # the GPU's memory is another matter
    ],
)
def test_auto_memory_is_balanced_with_enough_ram_and_low_without(memory, device, dtype, ram, expected):
    assert resolve_memory(memory, device, dtype, ram_bytes=ram) == expected
    half = {"low": (torch.float16, None), "balanced": (None, torch.float16), "speed": (None, None)}[expected]
    assert resolve_weight_dtype(memory, device, dtype, ram_bytes=ram) == half[0]
    assert resolve_encoder_weight_dtype(memory, device, dtype, ram_bytes=ram) == half[1]


def test_storage_dtype_per_component():
    balanced = Placement(device="cpu", dtype=torch.float32, encoder_weight_dtype=torch.float16)
    low = Placement(device="cpu", dtype=torch.float32, weight_dtype=torch.float16)
    assert [balanced.storage_dtype(c) for c in ("unet", "text_encoder", "text_encoder_2", "vae")] == [
        torch.float32,
        torch.float16,
        torch.float16,
        torch.float16,
    ]
    assert {low.storage_dtype(c) for c in ("unet", "text_encoder", "vae")} == {torch.float16}
    assert not balanced.half_precision_files  # the UNet reads the float32 files, as 'speed' does


def test_memory_setting_offers_balanced_and_says_what_each_choice_does():
    description = ModelSettings.model_fields["memory"].description or ""
    for word in ("'speed'", "'balanced'", "'low'", "'auto'", "12 GiB", "text encoders", "float16"):
        assert word in description, word
    assert ModelSettings(memory="balanced").memory == "balanced"
    with pytest.raises(ValidationError, match="balanced"):
        ModelSettings(memory="medium")
