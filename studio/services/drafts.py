"""Drafts: generated images an artist may mint. A draft's PNG is kept in the local IPFS store first and
its row written after, so a draft is never half-recorded and survives a later failed pin or mint."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from studio.generation import GenerationRequest, StageCallback, init_image_from_png
from studio.records import Draft
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.studio import Studio

MAX_SEED = 2**32 - 1

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class DraftResult:
    """A stored draft and what the generation said about it (e.g. a truncated prompt)."""

    draft: Draft
    png: bytes
    warnings: list[str]


ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1 square": (1, 1),
    "3:2 landscape": (3, 2),
    "2:3 portrait": (2, 3),
    "4:3 landscape": (4, 3),
    "3:4 portrait": (3, 4),
    "16:9 wide": (16, 9),
    "9:16 tall": (9, 16),
}
MIN_SIDE = 64


@dataclass(frozen=True)
class SizeSteps:
    """Width, height and steps as they will be used, and a sentence for each value that was changed."""

    width: int
    height: int
    steps: int | None
    notes: list[str]


def aspect_size(aspect: str, long_side: int, max_side: int) -> tuple[int, int]:
    """Width and height for an aspect ratio name of ASPECT_RATIOS with `long_side` pixels on its long side
    (both multiples of 8, within MIN_SIDE..max_side)."""
    if aspect not in ASPECT_RATIOS:
        raise InvalidInputError(f"Aspect ratio {aspect!r} is not one of {', '.join(ASPECT_RATIOS)}.")
    across, down = ASPECT_RATIOS[aspect]
    long_side = max(MIN_SIDE, min(int(long_side) - int(long_side) % 8, max_side))
    short = max(MIN_SIDE, round(long_side * min(across, down) / max(across, down) / 8) * 8)
    return (long_side, short) if across >= down else (short, long_side)


def adjust_size_and_steps(
    width: float | None, height: float | None, steps: float | None, *, max_side: int, max_steps: int
) -> SizeSteps:
    """Typed width, height and steps made usable, saying what changed (never silently): sides to the
    nearest multiple of 8 within MIN_SIDE..max_side, steps within 1..max_steps (0 or empty: the model's usual)."""
    notes: list[str] = []
    sides = []
    for name, value in (("Width", width), ("Height", height)):
        if value is None:
            raise InvalidInputError(f"{name} is empty: choose a size, e.g. 512.")
        used = max(MIN_SIDE, min(round(float(value) / 8) * 8, max_side))
        if used != value:
            why = (
                "the model works on 8×8 pixel blocks"
                if MIN_SIDE <= value <= max_side
                else f"sides run from {MIN_SIDE} to {max_side}"
            )
            notes.append(f"{name} {value:g} was changed to {used} ({why}).")
        sides.append(used)
    used_steps: int | None
    if steps is None or steps == 0:
        used_steps = None
    else:
        used_steps = max(1, min(round(float(steps)), max_steps))
        if used_steps != steps:
            notes.append(
                f"Steps {steps:g} was changed to {used_steps} (steps run from 1 to {max_steps}; 0 = the model's usual)."
            )
    return SizeSteps(width=sides[0], height=sides[1], steps=used_steps, notes=notes)


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def create_draft(
    studio: Studio,
    *,
    prompt: str,
    negative_prompt: str = "",
    seed: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    preset: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    on_stage: StageCallback | None = None,
) -> DraftResult:
    """Generate an image from a prompt and keep it as a draft. Settings left as None take the
    model's usual values (e.g. 1 step and no guidance for a turbo model)."""
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=random_seed() if seed is None else int(seed),
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        preset=preset,
    )
    return _generate_and_store(studio, request, parent_id=None, progress=progress, cancel=cancel, on_stage=on_stage)


def create_variation(
    studio: Studio,
    draft_id: int,
    *,
    strength: float,
    seed: int | None = None,
    prompt: str | None = None,
    steps: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    on_stage: StageCallback | None = None,
) -> DraftResult:
    """img2img from an existing draft: a variation that keeps its composition (lower strength, closer).

    Steps default to the model's usual img2img count for that strength, not the parent's: img2img
    runs only steps x strength of them."""
    parent = get_draft(studio, draft_id)
    init_image, init_latents = init_image_from_png(studio.store.cat(parent.image_cid))
    request = GenerationRequest(
        prompt=parent.prompt if prompt is None or not prompt.strip() else prompt,
        negative_prompt=parent.negative_prompt,
        seed=parent.seed if seed is None else int(seed),
        steps=steps,
        guidance_scale=parent.guidance_scale,
        width=parent.width,
        height=parent.height,
        preset=parent.provenance.get("preset"),
        init_image=init_image,
        init_latents=init_latents,
        init_image_cid=parent.image_cid,
        strength=float(strength),
    )
    return _generate_and_store(
        studio, request, parent_id=parent.id, progress=progress, cancel=cancel, on_stage=on_stage
    )


def _generate_and_store(
    studio: Studio,
    request: GenerationRequest,
    *,
    parent_id: int | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    on_stage: StageCallback | None = None,
) -> DraftResult:
    """on_stage hears the engine's stages (waiting, loading, encoding prompt, denoising, decoding),
    then "saving" while the PNG goes into the store and the draft's row is written."""
    result = studio.generator.generate(request, progress=progress, cancel=cancel, on_stage=on_stage)
    if on_stage is not None:
        on_stage("saving", {})
    image_cid = studio.store.add_bytes(result.png, name="draft.png")
    record = result.generation  # the values actually used, defaults resolved
    with studio.db.session() as session:
        draft = Draft(
            prompt=record.prompt,
            negative_prompt=record.negative_prompt,
            seed=record.seed,
            steps=record.steps,
            guidance_scale=record.guidance_scale,
            width=record.width,
            height=record.height,
            strength=record.strength,
            parent_id=parent_id,
            image_cid=image_cid,
            provenance=result.record,
        )
        session.add(draft)
    return DraftResult(draft=draft, png=result.png, warnings=list(result.warnings))


def get_draft(studio: Studio, draft_id: int) -> Draft:
    with studio.db.session() as session:
        draft = session.get(Draft, int(draft_id))
    if draft is None:
        raise NotFoundError(f"Draft {draft_id} does not exist: pick one from the list of drafts.")
    return draft


def list_drafts(studio: Studio, *, limit: int = 50) -> list[Draft]:
    """The newest drafts first."""
    with studio.db.session() as session:
        return list(session.scalars(select(Draft).order_by(Draft.id.desc()).limit(limit)))


def draft_png(studio: Studio, draft_id: int) -> bytes:
    """The draft's PNG, with its generation parameters in the `parameters` chunk."""
    return studio.store.cat(get_draft(studio, draft_id).image_cid)
