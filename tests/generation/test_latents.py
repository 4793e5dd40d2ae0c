"""Every PNG the engine makes carries the latents it was decoded from; img2img from such a PNG starts
from them (no encoder pass, no encode/decode drift), and from the pixels for any other image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from metadata.png import PngLatents, PngMetadataError, read_png_latents
from studio.generation import GenerationRequest, init_image_from_png


def txt2img(engine, seed: int = 5, size: int = 64):
    return engine.generate(GenerationRequest(prompt="a stone bridge", seed=seed, width=size, height=size))


def img2img(engine, png: bytes, *, seed: int = 5, strength: float = 0.5, width: int | None = None):
    image, latents = init_image_from_png(png)
    return engine.generate(
        GenerationRequest(
            prompt="a stone bridge in fog",
            seed=seed,
            init_image=image,
            init_latents=latents,
            strength=strength,
            width=width,
            height=width,
        )
    )


def test_png_carries_the_final_latents(engine) -> None:
    result = txt2img(engine)
    latents = read_png_latents(result.png)
    assert latents == result.latents
    assert latents.shape == (1, 4, 8, 8)  # 64x64 pixels, 8x8 latents
    assert latents.space.startswith("sd:4:")
    assert len(latents.float16) == 2 * 4 * 8 * 8


def test_img2img_from_our_png_starts_from_its_latents(engine) -> None:
    first = txt2img(engine)
    second = img2img(engine, first.png)
    assert second.record["init_from"] == "latents"
    assert second.timings.get("encoder", 0.0) == 0.0  # the VAE encoder never ran
    assert read_png_latents(second.png) is not None  # the chain goes on: the next version can too
    again = img2img(engine, first.png)
    assert again.png == second.png  # deterministic: the latents are part of the input PNG's bytes


def test_img2img_from_an_image_made_elsewhere_encodes_its_pixels(engine) -> None:
    first = txt2img(engine)
    plain = io.BytesIO()
    first.image.save(plain, format="PNG")  # same pixels, no chunks
    from_pixels = img2img(engine, plain.getvalue())
    from_latents = img2img(engine, first.png)
    assert from_pixels.record["init_from"] == "pixels"
    assert from_pixels.timings["encoder"] > 0
    assert from_pixels.png != from_latents.png


def test_latents_that_do_not_fit_fall_back_to_the_pixels(engine) -> None:
    first = txt2img(engine)
    resized = img2img(engine, first.png, width=96)  # other size: the stored 8x8 latents do not fit
    assert resized.record["init_from"] == "pixels"
    assert resized.image.size == (96, 96)
    foreign = PngLatents(space="sdxl:4:0.13025", shape=first.latents.shape, float16=first.latents.float16)
    other_space = engine.generate(
        GenerationRequest(prompt="a stone bridge", seed=5, init_image=first.image, init_latents=foreign, strength=0.5)
    )
    assert other_space.record["init_from"] == "pixels"


def test_malformed_latents_chunk_is_reported() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("latents", '{"format": "float16-le", "space": "sd:4:0.18215", "shape": [1, 4, 8, 8], "data": "!!"}')
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    with pytest.raises(PngMetadataError, match="latents chunk is malformed"):
        read_png_latents(buffer.getvalue())
    with pytest.raises(PngMetadataError, match="need 512 bytes"):
        PngLatents(space="sd:4:0.18215", shape=(1, 4, 8, 8), float16=b"\0\0")
