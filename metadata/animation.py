"""A living token's evolution as one animated WebP: its versions' images, oldest first, one frame each.

The gallery serves it full size (`/gallery/<id>/evolution.webp`); an evolved version's metadata names a
smaller, lossy one as `animation_url` (pinned with the version, so marketplaces that play animations,
such as OpenSea, show the token's life). Both come from `evolution_animation`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from metadata.errors import ContentError

FRAME_MS = 1200  # long enough to look at each version


class AnimationError(ContentError):
    """The frames could not be read as images (a version's image is not a PNG or JPEG the studio wrote)."""


def evolution_animation(
    frames: Sequence[bytes],
    *,
    max_frames: int,
    max_side: int | None = None,
    lossless: bool = True,
    quality: int = 85,
    frame_ms: int = FRAME_MS,
    version_strip: bool = False,
) -> bytes:
    """The images `frames` (encoded, oldest first) as a looping animated WebP: the latest `max_frames`,
    every frame at the last one's size, scaled down so neither side exceeds `max_side` (None: as is).
    `version_strip` draws a thin bar along the bottom, filled to the frame's place in the life (k of n):
    the viewer sees which version shows, and no two frames look alike (libwebp shows frames that look
    alike, within lossy tolerance, as one longer frame). Raises AnimationError for an empty list or
    bytes that are not an image."""
    if not frames:
        raise AnimationError("an evolution animation needs at least one image")
    images = []
    for index, data in enumerate(frames[-max_frames:]):
        try:
            with Image.open(io.BytesIO(data)) as opened:
                images.append(opened.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise AnimationError(f"frame {index} of the evolution animation is not an image: {exc}") from exc
    width, height = images[-1].size
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    size = (width, height)
    images = [image if image.size == size else image.resize(size, Image.Resampling.LANCZOS) for image in images]
    if version_strip and len(images) > 1:
        strip = max(3, height // 48)
        for index, image in enumerate(images):
            draw = ImageDraw.Draw(image)
            draw.rectangle((0, height - strip, width, height), fill=(0, 0, 0))
            draw.rectangle((0, height - strip, round(width * (index + 1) / len(images)), height), fill=(255, 255, 255))
    buffer = io.BytesIO()
    options: dict[str, object] = {"lossless": True} if lossless else {"quality": quality, "method": 4}
    images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=frame_ms, loop=0, **options)
    return buffer.getvalue()
