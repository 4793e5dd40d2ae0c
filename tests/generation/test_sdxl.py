"""SDXL through the engine, on a tiny random SDXL pipeline: two text encoders, text-time conditioning."""

from __future__ import annotations

import pytest
import torch

from metadata.png import read_png_metadata
from studio.config import ModelSettings
from studio.generation import Engine, GenerationRequest, init_image_from_png
from studio.generation.cpu import plan_for
from studio.generation.prepack import PrepackedLinear
from tests.fixtures.generation import float32_and_native_bf16, tiny_model_optimizations


def _engine(model_dir, dtype: str) -> Engine:
    return Engine(
        ModelSettings(model_id=str(model_dir), device="cpu", dtype=dtype, tiny_autoencoder_id=None, memory="speed")
    )


def test_sdxl_text_to_image_and_img2img_are_reproducible_and_recorded(tiny_sdxl_dir):
    engine = _engine(tiny_sdxl_dir, "float32")
    request = GenerationRequest(prompt="a lighthouse at dawn", seed=3, width=64, height=64)
    first = engine.generate(request)
    again = engine.generate(request)
    init_image, init_latents = init_image_from_png(first.png)
    moved = engine.generate(
        GenerationRequest(
            prompt="a lighthouse at night", seed=3, init_image=init_image, init_latents=init_latents, strength=0.5
        )
    )

    assert first.png == again.png
    assert engine.describe()["family"] == "sdxl"
    assert first.record["pipeline"] == "StableDiffusionXLPipeline"
    assert (first.record["steps"], first.record["guidance_scale"]) == (1, 0.0)  # turbo defaults
    assert first.latents.space == "sdxl:4:0.13025"
    assert moved.record["pipeline"] == "StableDiffusionXLImg2ImgPipeline"
    assert moved.record["init_from"] == "latents"
    parameters, provenance = read_png_metadata(moved.png)
    assert provenance["generation"] == moved.record
    assert "Denoising strength: 0.5" in parameters


@pytest.mark.parametrize(
    "dtype",
    float32_and_native_bf16("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 runs on the stock kernels there"),
)
def test_sdxl_runs_with_the_cpu_optimizations_this_cpu_class_gets(tiny_sdxl_dir, dtype):
    """Both text encoders (one with a projection) and the text-time embedding go through prepacked layers."""
    engine = _engine(tiny_sdxl_dir, dtype)
    request = GenerationRequest(prompt="a lighthouse at dawn", seed=3, width=64, height=64)
    result = engine.generate(request)

    plan = plan_for(getattr(torch, dtype))
    assert result.record["cpu_optimizations"] == tiny_model_optimizations(getattr(torch, dtype), tiny_autoencoder=False)
    pipe = engine._model.pipe
    for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.unet):
        assert any(isinstance(m, PrepackedLinear) for m in module.modules()) == plan.prepack_linears
    assert result.record["dtype"] == dtype
    assert engine.generate(request).png == result.png
