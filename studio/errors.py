"""The root of every error the studio raises on purpose: `StudioError`.

Each layer keeps its own base below it (`contracts.errors.ChainError`, `metadata.errors.ContentError`,
`studio.generation.errors.GenerationError`, `evolve.errors.EvolveError`, the services' errors in
`studio.services.errors`), so `except ChainError` still says "anything from the chain". Every one of
them carries a message written for a person: it names the problem and the fix. Anything else that
reaches the UI (a bare ValueError, KeyError...) is a bug, shown as an internal error and logged with
its traceback.

This module is a leaf (no imports) beside `studio/config.py` at the bottom of the house: contracts/,
metadata/ and studio/generation/ import it without pulling anything above them in (`studio/__init__.py`
imports nothing).
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error of ours; its message names the problem and the fix."""


class FileFieldError(StudioError):
    """A file a person wrote (a rules file, a collection spec) is wrong at one place: `path`, `line` (when
    known) and `field` say where, `detail` how to fix it; the message holds all of them."""

    def __init__(self, path: str, field: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {message}")
        self.path = path
        self.field = field
        self.line = line
        self.detail = message
