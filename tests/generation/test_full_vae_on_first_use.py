"""On the CPU the full VAE stays on disk while the tiny autoencoder decodes, and is read the first time a
request needs it (the quality and balanced presets, img2img from pixels): the fast preset's memory has no
room for weights it never uses, and the images are the ones a model loaded whole makes."""

from __future__ import annotations

import io
import os
import shutil

import pytest
import torch
from PIL import Image

from studio.config import ModelSettings
from studio.generation import Engine, GenerationRequest, GenerationResult
from studio.generation.cpu import cpu_capabilities
from studio.generation.errors import CorruptModelError

FAST = GenerationRequest(prompt="a red fox in the snow", seed=3, width=64, height=64, preset="fast")
QUALITY = GenerationRequest(prompt="a red fox in the snow", seed=3, width=64, height=64, preset="quality")


def _vae_unread(engine: Engine) -> bool:
    vae = engine._model.pipe.vae
    meta = [p.is_meta for p in vae.parameters()]
    assert all(meta) or not any(meta), "the VAE is half read"
    return all(meta) and engine._model.unread_vae is not None


def _layers(module: torch.nn.Module) -> list[str]:
    processors = getattr(module, "attn_processors", {}).values()
    return [type(m).__name__ for m in module.modules()] + [type(p).__name__ for p in processors]


def _without_latents(png: bytes) -> Image.Image:
    """The image alone, as an artist's upload: img2img has to encode its pixels with the full VAE."""
    return Image.open(io.BytesIO(png)).convert("RGB")


def _same_image(a: GenerationResult, b: GenerationResult) -> bool:
    """Pixels and latents (the provenance of an engine without a tiny autoencoder lists fewer CPU
    optimizations: the tiny autoencoder's fused ReLUs)."""
    return a.image.tobytes() == b.image.tobytes() and a.latents == b.latents


@pytest.mark.parametrize(
    ("dtype", "memory"),
    [
        ("float32", "speed"),
        ("float32", "balanced"),
        ("float32", "low"),
        pytest.param(
            "bfloat16",
            "speed",
            marks=pytest.mark.skipif(not cpu_capabilities().native_bf16, reason="this CPU has no native bf16"),
        ),
    ],
)
def test_the_full_vae_is_read_on_first_use_and_makes_the_images_a_model_loaded_whole_makes(
    tiny_model_settings, dtype, memory
):
    settings = tiny_model_settings.model_copy(update={"dtype": dtype, "memory": memory})
    deferred = Engine(settings)
    whole = Engine(settings.model_copy(update={"tiny_autoencoder_id": None}))  # the full VAE decodes fast too

    fast = deferred.generate(FAST)
    assert _vae_unread(deferred)  # the tiny autoencoder decoded it
    quality = deferred.generate(QUALITY)
    assert not _vae_unread(deferred)
    whole_quality = whole.generate(QUALITY)
    assert not _vae_unread(whole)

    assert _same_image(quality, whole_quality)
    assert quality.latents is not None
    # The same layers (prepacked, Winograd, float16-stored) and attention processors as a VAE read at load.
    assert _layers(deferred._model.pipe.vae) == _layers(whole._model.pipe.vae)
    assert quality.record["cpu_optimizations"] == fast.record["cpu_optimizations"]
    assert deferred.generate(FAST).png == fast.png


def test_img2img_from_pixels_reads_the_full_vae_to_encode_them(tiny_model_settings):
    first = Engine(tiny_model_settings).generate(FAST)
    moved = GenerationRequest(
        prompt="a red fox at night",
        seed=4,
        width=64,
        height=64,
        preset="quality",
        init_image=_without_latents(first.png),
        strength=0.6,
    )
    deferred = Engine(tiny_model_settings)
    deferred.load()
    assert _vae_unread(deferred)

    made = deferred.generate(moved)

    assert made.record["init_from"] == "pixels"
    assert not _vae_unread(deferred)
    whole = Engine(tiny_model_settings.model_copy(update={"tiny_autoencoder_id": None}))
    assert _same_image(made, whole.generate(moved))


def test_a_vae_file_changed_after_loading_fails_that_request_clearly_and_the_next_loads_the_new_files(
    tiny_model_settings, tmp_path
):
    """Images name their weights by the sha256 taken at load: a VAE file replaced since then must not be
    read into that model."""
    folder = tmp_path / "tiny-sd-turbo"
    shutil.copytree(tiny_model_settings.model_id, folder)
    engine = Engine(tiny_model_settings.model_copy(update={"model_id": str(folder)}))
    fast = engine.generate(FAST)
    vae_file = folder / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(vae_file.read_bytes())
    data[-4:] = bytes(4)  # another last weight, as a model saved again would have
    vae_file.write_bytes(bytes(data))
    stat = vae_file.stat()
    os.utime(vae_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    with pytest.raises(CorruptModelError, match="changed or disappeared after the model was loaded") as caught:
        engine.generate(QUALITY)
    assert "loads the model again on the next request" in str(caught.value)
    assert not engine.loaded

    quality = engine.generate(QUALITY)
    assert quality.record["weights_sha256"] != fast.record["weights_sha256"]
    assert engine.generate(FAST).png != fast.png  # the new files' weights sha256 in its provenance


def test_an_sdxl_model_reads_its_full_vae_on_first_use_too(tiny_sdxl_dir, tiny_autoencoder_dir):
    settings = ModelSettings(
        model_id=str(tiny_sdxl_dir),
        device="cpu",
        dtype="float32",
        tiny_autoencoder_id=str(tiny_autoencoder_dir),  # 4 latent channels, as SDXL's
        memory="balanced",
    )
    deferred = Engine(settings)
    deferred.generate(FAST)
    assert _vae_unread(deferred)

    quality = deferred.generate(QUALITY)

    assert not _vae_unread(deferred)
    assert _same_image(quality, Engine(settings.model_copy(update={"tiny_autoencoder_id": None})).generate(QUALITY))
