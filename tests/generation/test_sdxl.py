"""SDXL through the engine, on a tiny random SDXL pipeline: two text encoders, text-time conditioning."""

from __future__ import annotations

import pytest
import torch

from metadata.png import read_png_metadata
from studio.config import ModelSettings
from studio.generation import Engine, GenerationRequest, init_image_from_png
from studio.generation.attention import blocked_attention_useful
from studio.generation.prepack import prepack_supported


def _engine(model_dir, dtype: str) -> Engine:
    return Engine(ModelSettings(model_id=str(model_dir), device="cpu", dtype=dtype, tiny_autoencoder_id=None))


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


@pytest.mark.skipif(
    not (prepack_supported(torch.bfloat16) and blocked_attention_useful(torch.bfloat16)),
    reason="this CPU or PyTorch build runs bf16 with the stock kernels",
)
def test_sdxl_in_bf16_runs_with_the_cpu_optimizations(tiny_sdxl_dir):
    """Both text encoders (one with a projection) and the text-time embedding go through prepacked layers."""
    engine = _engine(tiny_sdxl_dir, "bfloat16")
    request = GenerationRequest(prompt="a lighthouse at dawn", seed=3, width=64, height=64)
    result = engine.generate(request)

    assert result.record["cpu_optimizations"] == ["onednn_prepack", "blocked_attention"]
    assert result.record["dtype"] == "bfloat16"
    assert engine.generate(request).png == result.png
