"""Errors of rules files. Each message names the file, the line and field where known, and the fix."""

from __future__ import annotations

from studio.errors import FileFieldError


class RulesError(FileFieldError):
    """A rules file is wrong. `line` and `field` say where; the message says how to fix it."""


class RulesNameError(RulesError):
    """A rules name that cannot name a file in the rules folder (a path, '..', odd characters)."""

    def __init__(self, name: str) -> None:
        message = (
            f"Rules name {name!r} is not valid: use letters, digits, '-', '_' or '.' (the file's name without "
            ".toml, e.g. 'weather')."
        )
        Exception.__init__(self, message)
        self.path = repr(name)
        self.field = "name"
        self.line = None
        self.detail = message
