"""A cycle's steps as they happen, for whoever watches it (the Evolve tab, `python -m evolve once`).

`Cycle(on_step=...)` calls the callback with a `CycleProgress` at each numbered step of evolve/cycle.py
and for each token it generates; the callback runs in the cycle's thread and must return quickly. An
exception it raises is logged and ignored: watching a cycle never changes what the cycle does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class CycleStage(StrEnum):
    """The steps of a cycle in the order they happen (per token, generating then pinning; with several
    images in flight on a Ray pool, the next tokens' generating overlaps a token's pinning)."""

    STARTED = "started"
    FEEDS = "feeds"
    SNAPSHOT = "snapshot"
    DECIDED = "decided"
    GENERATING = "generating"
    PINNING = "pinning"
    SENDING = "sending"
    CONFIRMED = "confirmed"
    FINISHED = "finished"


@dataclass(frozen=True)
class CycleProgress:
    """One step of a cycle in words (`text`), with what a progress display needs: `done` of `total`
    (tokens generated, tokens confirmed), the token it is about, the feed values read."""

    stage: CycleStage
    text: str
    done: int = 0
    total: int = 0
    token_id: int | None = None
    feeds: dict[str, str] = field(default_factory=dict)


ProgressCallback = Callable[[CycleProgress], None]
