"""metadata.png: the A1111 `parameters` chunk and the provenance iTXt chunk."""

from __future__ import annotations

from PIL import Image

from metadata.png import a1111_parameters, encode_png, read_png_metadata

RECORD = {
    "model_id": "stabilityai/sd-turbo",
    "model_revision": "b261bac6fd2cf515557d5d0707481eafa0485ec2",
    "weights_sha256": None,
    "pipeline": "StableDiffusionImg2ImgPipeline",
    "scheduler": "EulerAncestralDiscreteScheduler",
    "prompt": "Mt. Fuji: at dawn, 富士山",
    "negative_prompt": "",
    "steps": 2,
    "guidance_scale": 0.0,
    "seed": 42,
    "width": 512,
    "height": 512,
    "strength": 0.5,
    "init_image": "ipfs://bafyinit",
    "preset": "fast",
    "device": "cpu",
    "dtype": "bfloat16",
    "libraries": {"diffusers": "0.42.1", "torch": "2.13.0", "transformers": "5.24.0"},
}


def test_a1111_parameters_format():
    text = a1111_parameters({**RECORD, "negative_prompt": "blurry", "weights_sha256": "ab" * 32})
    assert text == (
        "Mt. Fuji: at dawn, 富士山\n"
        "Negative prompt: blurry\n"
        "Steps: 2, Sampler: Euler a, CFG scale: 0.0, Seed: 42, Size: 512x512, Model hash: ababababab, "
        "Model: sd-turbo, Denoising strength: 0.5, Version: diffusers 0.42.1"
    )


def test_unicode_prompt_round_trips_and_bytes_are_stable():
    image = Image.new("RGB", (16, 8), (10, 20, 30))
    provenance = {"version": 0, "previous": None, "generation": RECORD, "created_at": "2026-11-25T10:00:00Z"}
    png = encode_png(image, parameters=a1111_parameters(RECORD), provenance=provenance)

    parameters, read_back = read_png_metadata(png)
    assert parameters.startswith("Mt. Fuji: at dawn, 富士山\nSteps: 2")
    assert read_back == {"version": 0, "previous": None, "generation": RECORD}  # no created_at
    assert encode_png(image, parameters=a1111_parameters(RECORD), provenance=dict(reversed(provenance.items()))) == png
    with Image.open(__import__("io").BytesIO(png)) as reopened:
        assert reopened.size == (16, 8)


def test_a_deeply_nested_chunk_is_refused_not_a_crash():
    """After web3's import the recursion limit is 100000: json.loads of this would overflow the C stack."""
    import io

    import pytest
    import web3  # noqa: F401 - raises the recursion limit, as in the studio process
    from PIL import PngImagePlugin

    from metadata.png import PngMetadataError, read_png_latents

    deep = "[" * 131_072 + "]" * 131_072
    for key, read in (("provenance", read_png_metadata), ("latents", read_png_latents)):
        info = PngImagePlugin.PngInfo()
        info.add_itxt(key, deep, zip=True)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
        with pytest.raises(PngMetadataError, match="131,072 levels deep"):
            read(buffer.getvalue())
