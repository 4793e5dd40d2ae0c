"""Errors the services raise on top of those of the layers below (chain, content, generation).

Every error the UI may show derives from one of these bases or from the lower layers' own bases, and
its message names the problem and the fix.
"""


class StudioError(Exception):
    """Base of the services' own errors."""


class NotFoundError(StudioError):
    """A draft, token or rules file that does not exist."""


class InvalidInputError(StudioError, ValueError):
    """Input a person typed that cannot be used as it is."""
