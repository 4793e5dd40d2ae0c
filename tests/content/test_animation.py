"""metadata.animation: a token's versions as one animated WebP (Pillow's real encoder, real images)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from metadata.animation import FRAME_MS, AnimationError, evolution_animation

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (240, 240, 240)]


def png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def frames_of(data: bytes) -> list[tuple[tuple[int, int, int], int]]:
    """(centre colour, duration) of each frame."""
    animation = Image.open(io.BytesIO(data))
    assert animation.format == "WEBP"
    seen = []
    for index in range(animation.n_frames):
        animation.seek(index)
        rgb = animation.convert("RGB")
        seen.append((rgb.getpixel((rgb.width // 2, rgb.height // 2)), animation.info["duration"]))
    return seen


def close(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 8 for a, b in zip(colour, expected, strict=True))


@pytest.mark.parametrize("lossless", [True, False])
def test_one_frame_per_version_oldest_first(lossless: bool) -> None:
    data = evolution_animation([png(c) for c in COLOURS[:3]], max_frames=10, lossless=lossless)
    seen = frames_of(data)
    assert [duration for _, duration in seen] == [FRAME_MS] * 3
    assert all(close(colour, expected) for (colour, _), expected in zip(seen, COLOURS[:3], strict=True))


def test_frames_and_pixels_are_bounded() -> None:
    data = evolution_animation([png(c, (1024, 512)) for c in COLOURS], max_frames=3, max_side=256, lossless=False)
    assert Image.open(io.BytesIO(data)).size == (256, 128)  # the aspect ratio kept
    seen = frames_of(data)
    assert len(seen) == 3  # the latest three versions
    assert all(close(colour, expected) for (colour, _), expected in zip(seen, COLOURS[-3:], strict=True))


def test_the_version_strip_keeps_versions_that_look_alike_apart() -> None:
    same = [png(COLOURS[0])] * 3
    assert len(frames_of(evolution_animation(same, max_frames=5, lossless=False))) == 1  # merged by libwebp
    data = evolution_animation(same, max_frames=5, lossless=False, version_strip=True)
    seen = frames_of(data)
    assert [duration for _, duration in seen] == [FRAME_MS] * 3
    animation = Image.open(io.BytesIO(data))
    filled = []
    for index in range(3):
        animation.seek(index)
        bottom = animation.convert("RGB").crop((0, 62, 96, 63))
        filled.append(sum(1 for pixel in bottom.getdata() if pixel[0] > 128 and pixel[2] > 128))
    assert filled[0] < filled[1] < filled[2] == 96  # the strip says which version shows


def test_bytes_that_are_not_an_image_are_refused_by_name() -> None:
    with pytest.raises(AnimationError, match="frame 1 of the evolution animation is not an image"):
        evolution_animation([png(COLOURS[0]), b"<html>not a png</html>"], max_frames=5)
    with pytest.raises(AnimationError, match="at least one image"):
        evolution_animation([], max_frames=5)
