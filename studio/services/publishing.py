"""Publishing a token version: sign the image, pin it, build the metadata with its provenance, pin that.

Order matters and is the same for a mint and for an evolution: the PNG (its `parameters`, `provenance`
and `latents` chunks already written) is signed with Content Credentials, the CID is computed over the
signed file, the image is pinned (and its CID checked) before the metadata that points at it is built;
an evolved version's animation of the token's life so far (its `animation_url`) is pinned next, and
the metadata is pinned before anything goes on chain. A failure at any step leaves nothing on chain
pointing at unpinned content. Drafts stay unsigned; everything pinned here is signed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from metadata.animation import evolution_animation
from metadata.cid import cid_for_bytes, parse_cid
from metadata.errors import PinningError
from metadata.pinning import PinResult
from metadata.token import build_provenance, build_token_metadata, canonical_json
from metadata.unixfs import CODEC_RAW
from studio.records import Pin
from studio.services.credentials import sign_version, signing_identity
from studio.services.errors import InvalidInputError
from studio.services.studio import Studio

StepCallback = Callable[[str, dict[str, Any]], None]

# The `animation_url` of an evolved version: its latest versions at most this size, lossy (marketplaces
# fetch it through public gateways; the gallery serves the full-size lossless one itself).
ANIMATION_MAX_FRAMES = 24
ANIMATION_MAX_SIDE = 512
ANIMATION_QUALITY = 80


@dataclass(frozen=True)
class PublishedVersion:
    """A version whose image and metadata are pinned on every configured backend."""

    image_cid: str
    metadata_cid: str
    metadata: dict[str, Any]
    metadata_bytes: bytes
    image_png: bytes | None = None  # the PNG as pinned (signed)


def notify_step(on_step: StepCallback | None, step: str, **details: Any) -> None:
    """Tell the caller (the Mint tab) a step is starting; publishing and minting report the same way."""
    if on_step is not None:
        on_step(step, details)


def record_pins(studio: Studio, results: Sequence[PinResult], *, content_type: str | None = None) -> None:
    """Remember what is pinned where (idempotent: pinning the same content twice is one row)."""
    with studio.db.session() as session:
        for result in results:
            exists = session.scalar(select(Pin.id).where(Pin.cid == result.cid, Pin.backend == result.backend))
            if exists is None:
                session.add(
                    Pin(
                        cid=result.cid,
                        backend=result.backend,
                        name=result.name,
                        size=result.size,
                        content_type=content_type,
                    )
                )


def pin_content(studio: Studio, data: bytes, *, name: str, content_type: str, dry_run: bool = False) -> str:
    """Pin `data` on every configured backend (only the local store in a dry run) and return its CID.

    The local store always keeps a copy, so the studio's own gateway and gallery serve everything it
    published whichever backends are configured. The pinner compares each backend's CID with the one
    computed here; a mismatch raises.
    """
    local_cid = studio.store.add_bytes(data, name=name)
    if dry_run:
        return local_cid
    pinned = studio.pinner.pin_bytes(data, name=name)
    record_pins(studio, pinned.results, content_type=content_type)
    return pinned.cid


def pin_metadata_folder(studio: Studio, token_metadata: Mapping[int, str]) -> str:
    """Pin a drop's metadata folder and return its CID: one `<tokenId>.json` per token, each the very
    metadata file published for that token (`token_metadata` maps token id -> metadata CID).

    A token minted into a drop reads `ipfs://<folder>/<tokenId>.json` until its first evolution, while
    its MetadataSet event names the file's own CID: the folder entry must be that same CID, so every
    file is checked to be one raw block (what `publish_version` pins; a file over 256 KiB would be
    chunked into another CID) and the pinned folder's entries are compared with the files' CIDs.
    """
    if not token_metadata:
        raise InvalidInputError("A metadata folder needs at least one token.")
    with tempfile.TemporaryDirectory(prefix="drop-") as tmp:
        root = Path(tmp) / "metadata"
        root.mkdir()
        for token_id, metadata_cid in token_metadata.items():
            data = studio.store.cat(metadata_cid)
            if parse_cid(metadata_cid).codec != CODEC_RAW or cid_for_bytes(data) != metadata_cid:
                raise InvalidInputError(
                    f"Token {token_id}'s metadata {metadata_cid} is not a single raw block (it is {len(data)} "
                    "bytes): it cannot be a drop folder's entry; mint it with its own URI (a living mint)."
                )
            (root / f"{int(token_id)}.json").write_bytes(data)
        studio.store.add_directory(root)
        pinned = studio.pinner.pin_directory(root)
    record_pins(studio, pinned.results, content_type="inode/directory")
    entries = {entry.name: entry.cid for entry in studio.store.ls(pinned.cid)}
    expected = {f"{int(token_id)}.json": cid for token_id, cid in token_metadata.items()}
    if entries != expected:
        raise PinningError(f"The metadata folder {pinned.cid} does not hold exactly the drop's files: nothing minted.")
    return pinned.cid


def publish_version(
    studio: Studio,
    *,
    name: str,
    description: str,
    attributes: Sequence[dict[str, Any]],
    image_png: bytes,
    generation_record: dict[str, Any],
    version: int,
    previous_metadata_cid: str | None,
    feed_snapshot_cid: str | None = None,
    external_url: str | None = None,
    created_at: datetime | None = None,
    dry_run: bool = False,
    on_step: StepCallback | None = None,
    token_id: int | None = None,
    earlier_image_cids: Sequence[str] = (),
) -> PublishedVersion:
    """Sign a version's image, pin it and the metadata; return their CIDs. Raises before pinning the
    metadata if it does not validate, so invalid metadata is never pinned. `token_id` goes into the
    image's Content Credentials (unknown for a mint: the chain assigns it). For a version >= 1,
    `earlier_image_cids` (the token's earlier versions' images, oldest first, in the local store) and
    this image become the animated WebP its metadata names as `animation_url`, pinned before it."""
    identity = signing_identity(studio)
    signed_by = None
    if identity is not None:
        image_png = sign_version(
            studio,
            identity,
            image_png,
            name=name,
            generation_record=generation_record,
            version=version,
            previous_metadata_cid=previous_metadata_cid,
            feed_snapshot_cid=feed_snapshot_cid,
            token_id=token_id,
        )
        signed_by = identity.signer
    image_cid = cid_for_bytes(image_png)
    notify_step(on_step, "pin image", cid=image_cid, size=len(image_png), signed_by=signed_by)
    pinned_image_cid = pin_content(
        studio, image_png, name=f"{image_cid}.png", content_type="image/png", dry_run=dry_run
    )

    animation_cid = None
    if version >= 1 and earlier_image_cids:
        animation = evolution_animation(
            [*(studio.store.cat(cid) for cid in earlier_image_cids[-(ANIMATION_MAX_FRAMES - 1) :]), image_png],
            max_frames=ANIMATION_MAX_FRAMES,
            max_side=ANIMATION_MAX_SIDE,
            lossless=False,
            quality=ANIMATION_QUALITY,
            version_strip=True,
        )
        animation_cid = cid_for_bytes(animation)
        notify_step(on_step, "pin animation", cid=animation_cid, size=len(animation))
        animation_cid = pin_content(
            studio, animation, name=f"{animation_cid}.webp", content_type="image/webp", dry_run=dry_run
        )

    provenance = build_provenance(
        version=version,
        previous=previous_metadata_cid,
        generation=generation_record,
        feed_snapshot=feed_snapshot_cid,
        created_at=created_at,
    )
    metadata = build_token_metadata(
        name=name,
        description=description,
        image_cid=pinned_image_cid,
        attributes=list(attributes),
        provenance=provenance,
        external_url=external_url,
        animation_cid=animation_cid,
    )
    metadata_bytes = canonical_json(metadata)
    metadata_cid = cid_for_bytes(metadata_bytes)
    notify_step(on_step, "pin metadata", cid=metadata_cid, size=len(metadata_bytes))
    pinned_metadata_cid = pin_content(
        studio, metadata_bytes, name=f"{metadata_cid}.json", content_type="application/json", dry_run=dry_run
    )
    notify_step(on_step, "CID check", image_cid=pinned_image_cid, metadata_cid=pinned_metadata_cid)
    return PublishedVersion(
        image_cid=pinned_image_cid,
        metadata_cid=pinned_metadata_cid,
        metadata=metadata,
        metadata_bytes=metadata_bytes,
        image_png=image_png,
    )
