"""Regenerate a published version from its provenance and compare it with what was published
(`python -m metadata verify --replay N`).

The record names everything that decides the pixels: model (name and weights hash), seed, prompt,
steps, guidance, size, strength, the previous version's PNG whose latents img2img starts from, preset and
decoder, device, dtype, the CPU kernels that ran and the library versions. With the same model, on the
same device and dtype, with the same kernels and libraries (and the same torch thread count, which
provenance does not record), the image and its latents come out byte-identical; otherwise the replay says
how far the pixels are and which of those differ.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from metadata.jsonsafe import load_json_bounded
from metadata.png import read_png_latents
from metadata.token import MAX_METADATA_BYTES
from metadata.verify import MAX_IMAGE_BYTES, MAX_METADATA_DEPTH, ContentSource, FetchFailed, TokenReport, ipfs_cid
from studio.config import ModelSettings
from studio.generation.engine import Engine, GenerationRequest, init_image_from_png

# What must match for the replay to be exact (beyond model and weights, checked first).
EXACT_KEYS = ("device", "dtype", "cpu_optimizations", "libraries", "decoder", "pipeline", "scheduler")


@dataclass
class ReplayReport:
    """`identical`: pixels and latents equal to the published ones. `exact_expected`: this machine ran
    what provenance records (so anything but identical is a failure). `reasons`: why it cannot be exact."""

    version: int
    identical: bool = False
    exact_expected: bool = False
    pixel_max_diff: int | None = None
    pixel_mean_diff: float | None = None
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ok": self.ok,
            "identical": self.identical,
            "exact_expected": self.exact_expected,
            "pixel_max_diff": self.pixel_max_diff,
            "pixel_mean_diff": self.pixel_mean_diff,
            "reasons": self.reasons,
            "failures": self.failures,
        }


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def replay_version(
    version: int,
    record: dict[str, Any],
    published_png: bytes,
    init_png: bytes | None,
    model: ModelSettings,
    *,
    engine: Engine | None = None,
) -> ReplayReport:
    """Regenerate from `record` (a version's provenance.generation) with `model` (a local copy of the
    model it names) and compare with `published_png`; `init_png` is the PNG img2img started from."""
    report = ReplayReport(version)
    if engine is None:
        # "auto" means what the version was made with, so that an exact replay is possible at all.
        recorded = {"device": record.get("device"), "dtype": record.get("dtype")}
        update = {key: value for key, value in recorded.items() if getattr(model, key) == "auto" and value}
        engine = Engine(model.model_copy(update=update))
    if record.get("strength") is not None and init_png is None:
        report.failures.append("the version is img2img but the image it started from could not be read")
        return report
    init_image, init_latents = init_image_from_png(init_png) if init_png is not None else (None, None)
    if record.get("init_from") == "pixels":
        init_latents = None  # it was made from the pixels: so is the replay
    init_cid = str(record["init_image"]).removeprefix("ipfs://") if record.get("init_image") else None
    result = engine.generate(
        GenerationRequest(
            prompt=str(record.get("prompt", "")),
            negative_prompt=str(record.get("negative_prompt") or ""),
            seed=int(record["seed"]),
            steps=record.get("steps"),
            guidance_scale=record.get("guidance_scale"),
            width=record.get("width"),
            height=record.get("height"),
            preset=record.get("preset"),
            init_image=init_image,
            init_latents=init_latents,
            init_image_cid=init_cid,
            strength=record.get("strength"),
        )
    )
    ours = result.record
    for key in ("model_id", "weights_sha256"):
        if ours.get(key) != record.get(key):
            report.failures.append(
                f"the local model's {key} is {ours.get(key)!r}, provenance records {record.get(key)!r}: give the "
                "model the version was made with"
            )
    if report.failures:
        return report
    report.reasons = [
        f"{key}: recorded {record.get(key)!r}, here {ours.get(key)!r}"
        for key in EXACT_KEYS
        if ours.get(key) != record.get(key)
    ]
    report.exact_expected = not report.reasons
    expected, got = _pixels(published_png), _pixels(result.png)
    if expected.shape != got.shape:
        report.failures.append(f"the replay is {got.shape[1]}x{got.shape[0]}, the published image is not")
        return report
    difference = np.abs(expected - got)
    report.pixel_max_diff = int(difference.max())
    report.pixel_mean_diff = round(float(difference.mean()), 4)
    published_latents = read_png_latents(published_png)
    same_latents = published_latents == result.latents
    report.identical = report.pixel_max_diff == 0 and same_latents
    if report.exact_expected and not report.identical:
        report.failures.append(
            f"made as provenance records but not identical (max pixel difference {report.pixel_max_diff}, "
            f"latents {'equal' if same_latents else 'different'}); only the torch thread count, which provenance does "
            "not record, can still explain it"
        )
    return report


def replay_token_version(
    report: TokenReport, source: ContentSource, version: int, model: ModelSettings, *, engine: Engine | None = None
) -> ReplayReport:
    """Replay version `version` of a verified token: its record and image, and the image it started from,
    fetched (CID-checked) through `source`."""
    versions = {v.version: v for v in report.versions}
    checked = versions.get(version)
    if checked is None or checked.image_cid is None:
        return ReplayReport(version, failures=[f"version {version} is not on chain or its image could not be read"])
    try:
        metadata = load_json_bounded(
            source.cat(checked.metadata_cid, max_bytes=MAX_METADATA_BYTES),
            max_bytes=MAX_METADATA_BYTES,
            max_depth=MAX_METADATA_DEPTH,
            what="the metadata",
        )
        record = metadata["provenance"]["generation"]
        published = source.cat(checked.image_cid, max_bytes=MAX_IMAGE_BYTES)
        init_cid = ipfs_cid(record.get("init_image"))
        if init_cid is None and version > 0 and record.get("strength") is not None:
            init_cid = versions[version - 1].image_cid
        init_png = source.cat(init_cid, max_bytes=MAX_IMAGE_BYTES) if init_cid else None
    except (FetchFailed, ValueError, KeyError, TypeError) as exc:
        return ReplayReport(version, failures=[f"cannot read what the replay needs: {exc}"])
    return replay_version(version, record, published, init_png, model, engine=engine)
