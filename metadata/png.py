"""PNG files that carry their own provenance.

Two text chunks: `parameters` in AUTOMATIC1111's format (so Civitai, A1111 and ComfyUI readers show
the prompt and settings) and `provenance` (an iTXt chunk holding the provenance JSON without its
wall-clock `created_at`, so the same inputs always give the same bytes).

A third, optional chunk `latents` (compressed iTXt) holds the final latents the image was decoded
from. The next evolution of a token starts img2img from them instead of re-encoding the pixels: no
VAE encoder pass, and no encode/decode drift accumulating over hundreds of versions. They are part of
the content-addressed PNG, so anyone can reproduce a version from IPFS alone.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin

from metadata.errors import ContentError
from metadata.jsonsafe import load_json_bounded

PARAMETERS_KEY = "parameters"
PROVENANCE_KEY = "provenance"
LATENTS_KEY = "latents"
MAX_CHUNK_JSON_BYTES = 64 * 1024 * 1024
LATENTS_FORMAT = "float16-le"

# AUTOMATIC1111's names for diffusers' schedulers (its "Sampler" field).
_SAMPLER_NAMES = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSinglestepScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
    "DDPMScheduler": "DDPM",
}


class PngMetadataError(ContentError, ValueError):
    """The bytes are not a PNG, or its provenance chunk is not valid JSON."""


@dataclass(frozen=True)
class PngLatents:
    """Latents as stored in a PNG: which latent space, their shape, little-endian float16 values."""

    space: str
    shape: tuple[int, ...]
    float16: bytes

    def __post_init__(self) -> None:
        if len(self.float16) != 2 * math.prod(self.shape):
            raise PngMetadataError(f"latents of shape {self.shape} need {2 * math.prod(self.shape)} bytes")

    def to_json(self) -> str:
        document = {
            "format": LATENTS_FORMAT,
            "space": self.space,
            "shape": list(self.shape),
            "data": base64.b64encode(self.float16).decode("ascii"),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PngLatents:
        try:
            document = load_json_bounded(text, max_bytes=MAX_CHUNK_JSON_BYTES, max_depth=8, what="the latents chunk")
            if not isinstance(document, dict):
                raise PngMetadataError("the PNG's latents chunk is not a JSON object")
            if document.get("format") != LATENTS_FORMAT:
                raise PngMetadataError(f"unknown latents format {document.get('format')!r}")
            return cls(
                space=str(document["space"]),
                shape=tuple(int(n) for n in document["shape"]),
                float16=base64.b64decode(document["data"], validate=True),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, PngMetadataError):
                raise
            raise PngMetadataError(f"the PNG's latents chunk is malformed: {exc}") from exc


def _quote(value: str) -> str:
    """A1111 quotes a value only when it holds a separator."""
    if "," not in value and "\n" not in value and ":" not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def a1111_parameters(record: dict[str, Any]) -> str:
    """The `parameters` text AUTOMATIC1111 writes, from a generation record (provenance's `generation`)."""
    lines = [str(record.get("prompt", ""))]
    if record.get("negative_prompt"):
        lines.append(f"Negative prompt: {record['negative_prompt']}")
    scheduler = str(record.get("scheduler") or "")
    fields: list[tuple[str, Any]] = [
        ("Steps", record.get("steps")),
        ("Sampler", _SAMPLER_NAMES.get(scheduler, scheduler) or None),
        ("CFG scale", record.get("guidance_scale")),
        ("Seed", record.get("seed")),
        ("Size", f"{record.get('width')}x{record.get('height')}"),
    ]
    if record.get("weights_sha256"):
        fields.append(("Model hash", str(record["weights_sha256"])[:10]))
    model_id = str(record.get("model_id") or "")
    if model_id:
        fields.append(("Model", model_id.rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors")))
    if record.get("strength") is not None:
        fields.append(("Denoising strength", record["strength"]))
    libraries = record.get("libraries") or {}
    if libraries.get("diffusers"):
        fields.append(("Version", f"diffusers {libraries['diffusers']}"))
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in fields if value is not None))
    return "\n".join(lines)


def provenance_json(provenance: dict[str, Any]) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal provenance always gives equal bytes."""
    return json.dumps(provenance, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_png(
    image: Image.Image, *, parameters: str, provenance: dict[str, Any], latents: PngLatents | None = None
) -> bytes:
    """The image as PNG bytes with the `parameters` and `provenance` chunks (and `latents` when given).

    `created_at` is dropped from the provenance: a timestamp would make identical renders differ.
    """
    clean = {key: value for key, value in provenance.items() if key != "created_at"}
    info = PngImagePlugin.PngInfo()
    try:
        parameters.encode("latin-1")
        info.add_text(PARAMETERS_KEY, parameters)  # tEXt, as A1111 writes it
    except UnicodeEncodeError:
        info.add_itxt(PARAMETERS_KEY, parameters)  # prompts outside Latin-1 need UTF-8
    info.add_itxt(PROVENANCE_KEY, provenance_json(clean))
    if latents is not None:
        info.add_itxt(LATENTS_KEY, latents.to_json(), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def _text_chunks(png: bytes) -> dict[str, str]:
    try:
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                raise PngMetadataError(f"expected a PNG image, got {image.format}")
            image.load()  # text chunks after the image data are read only here
            return dict(getattr(image, "text", {}) or {})
    except (OSError, SyntaxError) as exc:
        raise PngMetadataError(f"not a readable PNG image: {exc}") from exc


def read_png_latents(png: bytes) -> PngLatents | None:
    """The latents a PNG was decoded from, or None when it carries none (an image made elsewhere)."""
    raw = _text_chunks(png).get(LATENTS_KEY)
    return None if raw is None else PngLatents.from_json(raw)


def read_png_metadata(png: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """The `parameters` text and the provenance dict of a PNG; None for a chunk that is absent."""
    text = _text_chunks(png)
    parameters = text.get(PARAMETERS_KEY)
    raw = text.get(PROVENANCE_KEY)
    if raw is None:
        return parameters, None
    try:
        # A PNG may come from anywhere: its JSON is measured before it is parsed (metadata.jsonsafe).
        provenance = load_json_bounded(raw, max_bytes=MAX_CHUNK_JSON_BYTES, max_depth=64, what="the provenance chunk")
    except ValueError as exc:  # BoundedJSONError: too large, too deep or not JSON
        raise PngMetadataError(f"the PNG's provenance chunk is refused: {exc}") from exc
    if not isinstance(provenance, dict):
        raise PngMetadataError("the PNG's provenance chunk is not a JSON object")
    return str(parameters) if parameters is not None else None, provenance
