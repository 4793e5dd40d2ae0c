"""The generation engine on the tiny random model: reproducible images, provenance, progress, cancel, threads."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image, ImageChops

from metadata.png import read_png_metadata
from studio.generation import (
    Engine,
    GenerationCancelled,
    GenerationRequest,
    get_engine,
)
from studio.generation.cpu import cpu_capabilities
from tests.fixtures.generation import float32_and_native_bf16, tiny_model_optimizations


def _txt2img(seed: int = 7, **fields) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox in the snow", seed=seed, **fields)


def _differs(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None


def test_same_request_gives_byte_identical_png_also_after_reloading(engine, tiny_model_settings):
    first = engine.generate(_txt2img())
    second = engine.generate(_txt2img())
    reloaded = Engine(tiny_model_settings).generate(_txt2img())

    assert first.image.size == (64, 64)
    assert first.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert first.png == second.png == reloaded.png


def test_different_seeds_give_different_images(engine):
    assert _differs(engine.generate(_txt2img(seed=1)).image, engine.generate(_txt2img(seed=2)).image)


def test_img2img_is_reproducible_and_moves_from_the_init_image(engine):
    init = engine.generate(_txt2img(seed=3)).image
    request = GenerationRequest(
        prompt="the fox turns blue", seed=3, init_image=init, init_image_cid="bafyinit", strength=0.5, steps=2
    )
    first = engine.generate(request)
    second = engine.generate(request)
    stronger = engine.generate(
        GenerationRequest(prompt="the fox turns blue", seed=3, init_image=init, strength=1.0, steps=2)
    )

    assert first.png == second.png
    assert first.record["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert first.record["init_image"] == "ipfs://bafyinit"
    assert first.record["strength"] == 0.5
    assert _differs(first.image, init)
    assert _differs(first.image, stronger.image)


def test_img2img_resizes_an_init_image_of_another_size_to_the_requested_size(engine):
    init = Image.new("RGB", (100, 60), (200, 30, 30))
    result = engine.generate(
        GenerationRequest(prompt="red", seed=1, init_image=init, strength=0.6, steps=2, width=64, height=64)
    )
    assert result.image.size == (64, 64)
    assert (result.record["width"], result.record["height"]) == (64, 64)


def test_record_is_the_provenance_generation_block(engine, tiny_model_dir):
    result = engine.generate(
        _txt2img(seed=42, negative_prompt="blurry", steps=2, guidance_scale=1.5, width=64, height=64, preset="quality")
    )
    record = result.record

    assert record == {
        "model_id": tiny_model_dir.name,  # a local path is published by name only
        "model_revision": None,
        "weights_sha256": engine.describe()["weights_sha256"],
        "pipeline": "StableDiffusionPipeline",
        "scheduler": "EulerDiscreteScheduler",
        "prompt": "a red fox in the snow",
        "negative_prompt": "blurry",
        "steps": 2,
        "guidance_scale": 1.5,
        "seed": 42,
        "width": 64,
        "height": 64,
        "strength": None,
        "init_image": None,
        "init_from": None,
        "preset": "quality",
        "decoder": "vae",
        "device": "cpu",
        "dtype": "float32",
        "cpu_optimizations": tiny_model_optimizations(torch.float32),  # what this CPU class runs in fp32
        "libraries": record["libraries"],
    }
    assert len(record["weights_sha256"]) == 64
    assert set(record["libraries"]) == {"diffusers", "torch", "transformers"}
    assert str(tiny_model_dir) not in result.png.decode("latin-1")


def test_png_carries_a1111_parameters_and_provenance(engine):
    result = engine.generate(_txt2img(seed=5, negative_prompt="ugly, blurry", steps=3))
    parameters, provenance = read_png_metadata(result.png)

    assert provenance == {"generation": result.record}
    lines = parameters.split("\n")
    assert lines[0] == "a red fox in the snow"
    assert lines[1] == "Negative prompt: ugly, blurry"
    assert lines[2].startswith("Steps: 3, Sampler: Euler, CFG scale: 0.0, Seed: 5, Size: 64x64, Model hash: ")
    assert "Model: tiny-sd-turbo" in lines[2]


def test_png_with_adds_version_chain_without_timestamp_and_stays_deterministic(engine):
    result = engine.generate(_txt2img(seed=6))
    extra = {
        "version": 3,
        "previous": "ipfs://bafkreiprevious",
        "feed_snapshot": "ipfs://bafkreifeed",
        "created_at": "2026-11-25T10:00:00Z",
    }
    png = result.png_with(extra)
    _, provenance = read_png_metadata(png)

    assert provenance == {
        "version": 3,
        "previous": "ipfs://bafkreiprevious",
        "feed_snapshot": "ipfs://bafkreifeed",
        "generation": result.record,
    }
    assert result.png_with({**extra, "created_at": "2027-01-01T00:00:00Z"}) == png


def test_fast_preset_uses_the_tiny_autoencoder_and_quality_the_full_vae(engine):
    fast = engine.generate(_txt2img(seed=8, preset="fast"))
    quality = engine.generate(_txt2img(seed=8, preset="quality"))

    assert fast.record["decoder"] == "taesd"
    assert quality.record["decoder"] == "vae"
    assert _differs(fast.image, quality.image)
    assert fast.warnings == [] == quality.warnings
    assert {"text_encoder", "unet", "decoder", "total"} <= set(fast.timings)


def test_fast_preset_without_tiny_autoencoder_falls_back_to_the_full_vae_and_says_so(tiny_model_settings):
    settings = tiny_model_settings.model_copy(update={"tiny_autoencoder_id": "living-nft-tests/no-such-taesd"})
    result = Engine(settings).generate(_txt2img(seed=8, preset="fast"))

    assert result.record["decoder"] == "vae"
    assert result.record["preset"] == "fast"
    assert any("no-such-taesd" in w and "full VAE" in w for w in result.warnings)


def test_progress_is_reported_once_per_denoising_step(engine):
    calls: list[tuple[int, int]] = []
    engine.generate(_txt2img(steps=3), progress=lambda step, total: calls.append((step, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]

    calls.clear()
    init = Image.new("RGB", (64, 64), "white")
    engine.generate(
        GenerationRequest(prompt="x", seed=1, init_image=init, strength=0.5, steps=4),
        progress=lambda step, total: calls.append((step, total)),
    )
    assert calls == [(1, 2), (2, 2)]  # img2img runs steps × strength


def test_cancel_mid_run_then_the_engine_still_works(engine):
    expected = engine.generate(_txt2img(seed=9, steps=3)).png
    cancel = threading.Event()
    seen: list[int] = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        if step == 1:
            cancel.set()

    with pytest.raises(GenerationCancelled, match="cancelled"):
        engine.generate(_txt2img(seed=9, steps=3), progress=progress, cancel=cancel)
    assert seen == [1]
    assert engine.generate(_txt2img(seed=9, steps=3)).png == expected


def test_cancel_before_start_runs_nothing(engine):
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    with pytest.raises(GenerationCancelled):
        engine.generate(_txt2img(), progress=lambda step, total: calls.append(step), cancel=cancel)
    assert calls == []


def test_two_threads_at_once_both_get_their_own_correct_image(engine):
    requests = [_txt2img(seed=21, steps=2), _txt2img(seed=22, steps=2)]
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(index: int) -> None:
        try:
            start.wait(timeout=30)
            results[index] = engine.generate(requests[index]).png
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert results[0] != results[1]
    # The same requests made one after another give the same bytes.
    assert results[0] == engine.generate(requests[0]).png
    assert results[1] == engine.generate(requests[1]).png


def test_get_engine_returns_one_engine_per_settings(tiny_model_settings):
    first = get_engine(tiny_model_settings)
    assert get_engine(tiny_model_settings) is first
    other = get_engine(tiny_model_settings.model_copy(update={"preset": "quality"}))
    assert other is not first
    assert not first.loaded  # the replaced engine released its weights


def test_describe_reports_model_device_and_dtype_before_and_after_loading(tiny_model_settings, tiny_model_dir):
    engine = Engine(tiny_model_settings)
    before = engine.describe()
    assert before["loaded"] is False
    assert before["device"] == "cpu"
    assert before["dtype"] == "float32"
    engine.load()
    after = engine.describe()
    assert after["loaded"] is True
    assert after["family"] == "sd"
    assert after["source"] == "folder"
    assert after["model_id"] == str(tiny_model_dir)


@pytest.mark.parametrize(
    "dtype",
    float32_and_native_bf16("this CPU has no native bf16 (AVX512-BF16 or AMX); the emulated path is tested below"),
)
def test_engine_keeps_its_weights_in_their_dtype_across_presets_and_img2img(tiny_model_settings, dtype):
    """The pipelines for fast/img2img share the weights; making them must not re-cast those weights
    (from_pipe casts to float32 unless told otherwise) nor undo the CPU optimizations."""
    engine = Engine(tiny_model_settings.model_copy(update={"dtype": dtype}))
    quality = _txt2img(seed=11, preset="quality")
    before = engine.generate(quality)
    fast = engine.generate(_txt2img(seed=11, preset="fast"))
    moved = engine.generate(
        GenerationRequest(prompt="blue", seed=11, init_image=before.image, strength=0.5, steps=2, preset="quality")
    )
    after = engine.generate(quality)

    assert {before.record["dtype"], fast.record["dtype"], moved.record["dtype"]} == {dtype}
    assert after.png == before.png
    expected_dtype = getattr(torch, dtype)
    for module in (engine._model.pipe.unet, engine._model.pipe.text_encoder, engine._model.pipe.vae):
        assert {p.dtype for p in module.parameters()} == {expected_dtype}
    assert fast.record["cpu_optimizations"] == moved.record["cpu_optimizations"] == before.record["cpu_optimizations"]


@pytest.mark.skipif(cpu_capabilities().native_bf16, reason="this CPU runs bf16 natively (tested above)")
def test_bfloat16_on_a_cpu_without_native_bf16_runs_on_stock_kernels_and_says_so(tiny_model_settings):
    """An AVX2-only CPU: oneDNN's bf16 kernels would crash, so none are used and every image says why
    it is slow (make test runs this with the CPU held to AVX2 on bigger machines)."""
    engine = Engine(tiny_model_settings.model_copy(update={"dtype": "bfloat16"}))
    request = _txt2img(seed=3, preset="quality")
    result = engine.generate(request)

    assert result.record["dtype"] == "bfloat16"
    assert result.record["cpu_optimizations"] == []
    assert any(
        "bfloat16 on this CPU" in warning and "STUDIO_MODEL__DTYPE=auto" in warning for warning in result.warnings
    )
    assert engine.generate(request).png == result.png
