"""What an evolution cycle changed, as a person reads it: the feed values it read (from the snapshot it
pinned) and, per token, the image before and after with the prompt and traits that made it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from studio.services.studio import Studio
from studio.services.tokens import get_token, timeline

MAX_SNAPSHOT_BYTES = 1_000_000  # a snapshot is a few KB; a bigger one is not shown
MAX_VALUE_CHARS = 120


@dataclass(frozen=True)
class CycleChange:
    """One token a cycle changed (or, in a dry run, would change)."""

    token_id: int
    name: str
    version: int
    before_image_cid: str
    after_image_cid: str | None
    prompt: str | None
    traits: dict[str, str] = field(default_factory=dict)
    applied: bool = True  # False in a dry run: nothing was sent


def feed_values(studio: Studio, snapshot_cid: str | None, fallback: dict[str, str]) -> dict[str, str]:
    """Each feed's value in words ("clock: part_of_day=morning, hour=9"), read from the cycle's pinned
    snapshot; `fallback` (the report's per-feed status) when there is no snapshot to read."""
    if not snapshot_cid:
        return dict(fallback)
    data = studio.store.cat(snapshot_cid)
    if len(data) > MAX_SNAPSHOT_BYTES:
        return dict(fallback)
    document = json.loads(data)
    values: dict[str, str] = {}
    for name, reading in sorted((document.get("feeds") or {}).items()):
        if not isinstance(reading, dict):
            continue
        if reading.get("ok") and "value" in reading:
            values[name] = value_words(reading.get("value"))
        else:
            values[name] = f"unavailable: {reading.get('error') or 'no value'}"
    return values or dict(fallback)


def value_words(value: Any) -> str:
    """A feed value in words: `key=value` pairs for a mapping, shortened past MAX_VALUE_CHARS."""
    if isinstance(value, dict):
        text = ", ".join(f"{key}={value_words(item)}" for key, item in value.items())
    elif isinstance(value, list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def cycle_changes(
    studio: Studio, *, evolved: Sequence[int] = (), would_change: Sequence[dict[str, Any]] = ()
) -> list[CycleChange]:
    """Before and after of each token a cycle evolved (from the token's recorded versions), or of each
    token a dry run would change (its preview image, nothing sent)."""
    changes: list[CycleChange] = []
    for token_id in evolved:
        token = get_token(studio, int(token_id))
        views = timeline(studio, int(token_id))
        after = views[-1]
        before = views[-2] if len(views) > 1 else views[-1]
        state = after.state or {}
        changes.append(
            CycleChange(
                token_id=token.token_id,
                name=token.name,
                version=after.version,
                before_image_cid=before.image_cid,
                after_image_cid=after.image_cid,
                prompt=state.get("prompt"),
                traits={str(k): str(v) for k, v in (state.get("traits") or {}).items()},
            )
        )
    for change in would_change:
        token = get_token(studio, int(change["token_id"]))
        state = change.get("state") or {}
        changes.append(
            CycleChange(
                token_id=token.token_id,
                name=token.name,
                version=int(change.get("version") or token.current_version + 1),
                before_image_cid=token.current_image_cid,
                after_image_cid=change.get("image_cid"),
                prompt=state.get("prompt"),
                traits={str(k): str(v) for k, v in (state.get("traits") or {}).items()},
                applied=False,
            )
        )
    return changes
