"""STUDIO_MODEL__MEMORY=low: a float32 model's weights kept in float16, computed in float32.

What users rely on: the images are float32 arithmetic on the model's own float16 files (the same
pixels as those files loaded into float32), the weights stay half for good (no later call widens
them), provenance says so, and 'auto' picks it only on small machines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from studio.generation import Engine, GenerationRequest
from studio.generation.devices import LOW_MEMORY_BELOW_BYTES, resolve_weight_dtype
from studio.generation.half_storage import HalfStoredConv2d, HalfStoredLinear, store_half
from studio.generation.prepack import PrepackedLinear, prepack_supported
from tests.fixtures.generation import build_tiny_pipeline


@pytest.fixture(scope="module")
def half_files_model_dir(tmp_path_factory: pytest.TempPathFactory, _pinned_torch_threads) -> Path:
    """The tiny model with float32 files and an "fp16" variant of the same values, as hub repositories
    ship them (the float32 files hold the float16 values, so both give the same pixels)."""
    root = tmp_path_factory.mktemp("half-files")
    pipe = build_tiny_pipeline(root)
    for component in (pipe.unet, pipe.vae, pipe.text_encoder):
        component.to(torch.float16).to(torch.float32)
    folder = root / "tiny-sd-turbo"
    pipe.save_pretrained(folder, safe_serialization=True)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
    return folder


def _engine(tiny_model_settings, folder: Path, **update) -> Engine:
    return Engine(tiny_model_settings.model_copy(update={"model_id": str(folder), **update}))


@pytest.mark.parametrize("preset", ["fast", "quality"])
def test_low_memory_computes_in_float32_what_the_float16_files_give(tiny_model_settings, half_files_model_dir, preset):
    request = GenerationRequest(prompt="a lighthouse at dusk", seed=11, width=128, height=96, preset=preset)
    low = _engine(tiny_model_settings, half_files_model_dir, memory="low")
    stock = _engine(tiny_model_settings, half_files_model_dir, memory="speed", cpu_optimizations=False)

    made = low.generate(request)
    reference = stock.generate(request)

    # The PNGs differ only in their provenance (cpu_optimizations): the pixels are the same.
    assert np.array_equal(np.asarray(made.image), np.asarray(reference.image))
    assert made.record["dtype"] == "float32"
    assert made.record["cpu_optimizations"] == ["fp16_weight_storage"]
    assert reference.record["cpu_optimizations"] == []
    assert low.generate(request).png == made.png  # same seed, same bytes


def test_low_memory_weights_stay_half_after_every_kind_of_request(tiny_model_settings, half_files_model_dir):
    """from_pipe (img2img, the other decoder) casts every shared module to its dtype: it must not widen
    the stored weights for good."""
    engine = _engine(tiny_model_settings, half_files_model_dir, memory="low")
    first = engine.generate(GenerationRequest(prompt="a red fox", seed=1, width=64, height=64, preset="fast"))
    engine.generate(GenerationRequest(prompt="a red fox", seed=1, width=64, height=64, preset="quality"))
    engine.generate(
        GenerationRequest(
            prompt="a red fox at night", seed=2, width=64, height=64, init_image=first.image, strength=0.6
        )
    )

    pipe = engine._model.pipe
    for component in (pipe.unet, pipe.text_encoder, pipe.vae):
        swapped = [m for m in component.modules() if isinstance(m, HalfStoredLinear | HalfStoredConv2d)]
        assert swapped, type(component).__name__
        assert all(m.stored_weight.dtype == torch.float16 for m in swapped)
        assert not [m for m in component.modules() if type(m) in (nn.Linear, nn.Conv2d)]
        assert component.dtype == torch.float32  # what the pipeline makes its latents and embeddings in
        assert all(p.dtype == torch.float32 for p in component.parameters())


def test_store_half_is_exact_for_float16_values_and_leaves_other_layers_alone():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.Conv2d(8, 8, 3, padding="same"),  # needs the input size: left as it is
        nn.Flatten(),
        nn.Linear(8 * 5 * 5, 6),
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    x = torch.randn(2, 4, 5, 5)
    with torch.inference_mode():
        expected = model(x)
        assert store_half(model) == 2
        assert store_half(model) == 0  # done already
        got = model(x)
    assert torch.equal(got, expected)
    assert isinstance(model[0], HalfStoredConv2d)
    assert isinstance(model[4], HalfStoredLinear)
    assert type(model[1]) is nn.GroupNorm
    assert type(model[2]) is nn.Conv2d


@pytest.mark.skipif(not prepack_supported(torch.float32), reason="this PyTorch build has no oneDNN")
@pytest.mark.usefixtures("_pinned_torch_threads")
def test_a_float16_stored_linear_on_onednn_computes_the_prepacked_float32_layer():
    """Memory 'balanced' runs the text encoder's float16-stored linears on oneDNN: a prompt's 77
    tokens through a 512->2048 layer give, bit for bit, what the prepacked float32 layer gives."""
    torch.manual_seed(0)
    linear = nn.Linear(512, 2048).eval()
    with torch.no_grad():
        linear.weight.copy_(linear.weight.half().float())
    x = torch.randn(1, 77, 512)
    with torch.inference_mode():
        expected = PrepackedLinear(linear)(x)
        got = HalfStoredLinear(linear, onednn=True)(x)
    assert got.shape == (1, 77, 2048)
    assert torch.equal(got, expected)
    assert HalfStoredLinear(linear, onednn=True).stored_weight.dtype == torch.float16


GIB = 1 << 30


@pytest.mark.parametrize(
    ("memory", "device", "dtype", "ram", "expected"),
    [
        ("low", "cpu", torch.float32, 64 * GIB, torch.float16),
        ("speed", "cpu", torch.float32, 4 * GIB, None),
        ("auto", "cpu", torch.float32, 8 * GIB, torch.float16),  # an 8 GiB laptop
        ("auto", "cpu", torch.float32, LOW_MEMORY_BELOW_BYTES, None),
        ("auto", "cpu", torch.float32, 32 * GIB, None),
        ("low", "cpu", torch.bfloat16, 8 * GIB, None),  # half already
        ("low", "cuda", torch.float16, 8 * GIB, None),  # the GPU's memory is another matter
    ],
)
def test_weight_storage_is_half_only_for_float32_on_the_cpu_when_asked_or_short_of_ram(
    memory, device, dtype, ram, expected
):
    assert resolve_weight_dtype(memory, device, dtype, ram_bytes=ram) == expected
