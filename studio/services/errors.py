"""Errors the services raise on top of those of the layers below (chain, content, generation).

Every error the UI may show derives from `studio.errors.StudioError` (re-exported here), through the
lower layers' own bases or directly, and its message names the problem and the fix.
"""

from studio.errors import StudioError

__all__ = ["InvalidInputError", "NotFoundError", "StudioError"]


class NotFoundError(StudioError):
    """A draft, token or rules file that does not exist."""


class InvalidInputError(StudioError, ValueError):
    """Input a person typed that cannot be used as it is."""
