"""The content layer's exceptions: each message names the problem and the fix.

They share one base, `ContentError` (a `studio.errors.StudioError`), so callers (services, the app) can
catch everything that comes out of metadata/ in one place and show the message as it is.
"""

from __future__ import annotations

from studio.errors import StudioError


class ContentError(StudioError):
    """Base of every error raised by the content layer."""


class InvalidCIDError(ContentError, ValueError):
    """A string that is not a CID this studio can use (or not the kind of CID the caller needs)."""


class ContentReadError(ContentError):
    """A file or folder that is missing or cannot be read."""


class ContentTooLargeError(ContentError):
    """Content over the configured size limit (`ipfs.max_file_mb`) or a metadata block over 256 KiB."""


class BlockNotFoundError(ContentError):
    """The local store does not hold a block (the content was never added, or was removed)."""


class CorruptBlockError(ContentError):
    """A stored block whose bytes no longer hash to its CID: it is never served."""


class ContentPathError(ContentError):
    """A path inside a CID that does not exist, or goes through something that is not a directory."""


class PinningError(ContentError):
    """Base of the pinning errors: the content was not pinned."""


class PinningAuthError(PinningError):
    """The pinning service refused the credentials (HTTP 401/403) or none were configured."""


class PinningQuotaError(PinningError):
    """The pinning service refused the upload because an account limit or quota is reached."""


class PinningUnavailableError(PinningError):
    """The pinning service could not be reached, timed out, or kept failing after the retries."""


class CIDMismatchError(PinningError):
    """A backend returned a CID different from the one computed locally: never accepted."""


class MetadataValidationError(ContentError, ValueError):
    """Token or collection metadata that does not satisfy the schema or the text rules."""


class BoundedJSONError(ContentError, ValueError):
    """JSON from outside refused by metadata.jsonsafe: too large, nested too deep, not UTF-8 or not JSON."""


class CredentialsError(ContentError):
    """Content Credentials (C2PA) that cannot be made: a missing, unreadable or unsuitable signing
    certificate or key, or the C2PA library refusing to sign."""


class VerificationError(ContentError):
    """`python -m metadata verify` cannot start or read what it must check (the chain, the contract, the
    trust anchor): distinct from a token that fails its checks, which is reported, not raised."""
