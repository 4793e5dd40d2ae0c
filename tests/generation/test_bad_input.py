"""Every bad input of the issue gives a clear error naming the fix, and the engine keeps working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from studio.generation import (
    CorruptModelError,
    Engine,
    GenerationRequest,
    InvalidRequestError,
    ModelNotAvailableError,
    UnsupportedCheckpointError,
)

WHITE = Image.new("RGB", (64, 64), "white")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 65}, r"width 65 is not a multiple of 8.*use 64 or 72"),
        ({"height": 100}, r"height 100 is not a multiple of 8"),
        ({"width": 264}, r"width 264 is outside 64\.\.256 pixels \(model.max_side"),
        ({"height": 32}, r"height 32 is outside"),
        ({"steps": 0}, r"steps must be a whole number from 1 to 150"),
        ({"steps": 151}, r"steps must be a whole number from 1 to 150"),
        ({"guidance_scale": -1.0}, r"guidance_scale must be from 0 to 30"),
        ({"seed": -1}, r"seed must be a whole number from 0"),
        ({"preset": "turbo"}, r"preset must be one of fast, quality"),
        ({"prompt": "fox " * 1001}, r"prompt is 4004 characters; at most 4000"),
        ({"strength": 0.5}, r"strength and init_image_cid need an init_image"),
        ({"init_image": WHITE}, r"img2img needs a strength"),
        ({"init_image": WHITE, "strength": 0.0}, r"strength must be above 0 and at most 1"),
        ({"init_image": WHITE, "strength": 1.5}, r"strength must be above 0 and at most 1"),
        ({"init_image": WHITE, "strength": 0.2, "steps": 2}, r"runs no denoising step.*at least 5 steps"),
    ],
)
def test_invalid_request_is_refused_with_the_fix_and_the_engine_still_works(engine, fields, message):
    request = GenerationRequest(**{"prompt": "a fox", "seed": 1, **fields})
    with pytest.raises(InvalidRequestError, match=message):
        engine.generate(request)
    assert engine.generate(GenerationRequest(prompt="a fox", seed=1)).image.size == (64, 64)


def test_prompt_over_the_text_encoder_limit_is_truncated_with_a_warning(engine):
    words = " ".join(["fox"] * 60 + ["zebra"])  # far more than 75 tokens with the tiny vocabulary
    long = engine.generate(GenerationRequest(prompt=words, seed=1))
    assert len(long.warnings) == 1
    assert "text encoder reads only 75" in long.warnings[0]
    assert "zebra" in long.warnings[0]  # the warning shows what was dropped
    assert long.record["prompt"] == words

    short = engine.generate(GenerationRequest(prompt="a fox", seed=1, negative_prompt=words))
    assert any(w.startswith("The negative prompt is") for w in short.warnings)


def _settings(tiny_model_settings, model_id: str):
    return tiny_model_settings.model_copy(update={"model_id": model_id})


def test_missing_model_path_says_how_to_point_to_a_model(tiny_model_settings, tmp_path):
    engine = Engine(_settings(tiny_model_settings, str(tmp_path / "no-such-model")))
    with pytest.raises(ModelNotAvailableError, match=r"does not exist.*STUDIO_MODEL__MODEL_ID"):
        engine.generate(GenerationRequest(prompt="a fox", seed=1))
    assert not engine.loaded
    with pytest.raises(ModelNotAvailableError):  # asked again, the same clear answer
        engine.load()


def test_hub_id_offline_says_how_to_get_the_model(tiny_model_settings):
    engine = Engine(_settings(tiny_model_settings, "living-nft-studio-tests/not-cached-model"))
    with pytest.raises(ModelNotAvailableError) as caught:
        engine.load()
    text = str(caught.value)
    assert "living-nft-studio-tests/not-cached-model" in text
    assert "HF_HUB_OFFLINE" in text
    assert "hf download" in text
    assert "local diffusers folder" in text
    assert engine.describe()["loaded"] is False


def test_folder_without_model_index_points_at_its_safetensors_file(tiny_model_settings, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "dreamshaper.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotAvailableError, match=r"no model_index.json.*dreamshaper.safetensors"):
        Engine(_settings(tiny_model_settings, str(folder))).load()


def test_corrupt_model_index_is_reported(tiny_model_settings, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model_index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptModelError, match=r"model_index.json is not valid JSON.*again"):
        Engine(_settings(tiny_model_settings, str(broken))).load()


def test_truncated_weights_are_reported_and_a_good_engine_is_unaffected(
    engine, tiny_model_settings, tiny_model_dir, tmp_path
):
    broken = tmp_path / "truncated"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CorruptModelError, match=r"could not be loaded.*damaged"):
        Engine(_settings(tiny_model_settings, str(broken))).load()
    assert engine.generate(GenerationRequest(prompt="a fox", seed=1)).image.size == (64, 64)


def test_other_pipeline_types_are_unsupported(tiny_model_settings, tiny_model_dir, tmp_path):
    flux = tmp_path / "flux-like"
    shutil.copytree(tiny_model_dir, flux)
    index = json.loads((flux / "model_index.json").read_text(encoding="utf-8"))
    index["_class_name"] = "FluxPipeline"
    (flux / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(UnsupportedCheckpointError, match=r"FluxPipeline.*Stable Diffusion family"):
        Engine(_settings(tiny_model_settings, str(flux))).load()


def test_pickle_checkpoints_are_refused(tiny_model_settings, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UnsupportedCheckpointError, match=r"pickle checkpoint.*\.safetensors"):
        Engine(_settings(tiny_model_settings, str(ckpt))).load()


def test_safetensors_that_is_not_a_whole_sd_checkpoint_is_unsupported(tiny_model_settings, tmp_path):
    import torch
    from safetensors.torch import save_file

    lora = tmp_path / "style-lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1)}, str(lora))
    with pytest.raises(UnsupportedCheckpointError, match=r"not a whole Stable Diffusion checkpoint.*LoRA"):
        Engine(_settings(tiny_model_settings, str(lora))).load()


def test_damaged_safetensors_file_is_reported(tiny_model_settings, tmp_path):
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes(b"\xff" * 64)
    with pytest.raises(CorruptModelError, match=r"cannot be read as a \.safetensors file"):
        Engine(_settings(tiny_model_settings, str(damaged))).load()


def test_png_reader_refuses_what_is_not_a_png():
    from metadata.png import PngMetadataError, read_png_metadata

    with pytest.raises(PngMetadataError, match="not a readable PNG"):
        read_png_metadata(b"GIF89a not a png")


def test_png_without_chunks_reads_as_none(tmp_path: Path):
    import io

    from metadata.png import read_png_metadata

    buffer = io.BytesIO()
    WHITE.save(buffer, format="PNG")
    assert read_png_metadata(buffer.getvalue()) == (None, None)
