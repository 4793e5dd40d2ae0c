"""What can go wrong when generating, as exceptions whose messages name the problem and the fix.

Every one of them leaves the engine usable: the caller can fix the request (or the settings) and
try again without restarting the studio.
"""

from __future__ import annotations

from studio.errors import StudioError


class GenerationError(StudioError):
    """Base class: anything the generation engine refuses or fails to do."""


class InvalidRequestError(GenerationError, ValueError):
    """The request itself is wrong (size, steps, strength, seed...): nothing was generated."""


class ModelNotAvailableError(GenerationError):
    """The configured model cannot be found or fetched (missing path, offline with no cached copy)."""


class DownloadInterruptedError(ModelNotAvailableError, OSError):
    """A model download that had started stopped (connection lost, hub error). The files already fetched
    stay in the cache; the next attempt goes on from there. An OSError too, as huggingface_hub's are."""


class CorruptModelError(ModelNotAvailableError):
    """The model was found but its files cannot be read (broken JSON, truncated or missing weights)."""


class UnsupportedCheckpointError(GenerationError):
    """The model exists but is not a Stable Diffusion family checkpoint this studio can run."""


class GenerationCancelled(GenerationError):
    """The caller cancelled the run (its cancel event was set); no image was produced."""


class OutOfMemoryError(GenerationError):
    """The device ran out of memory; a smaller size, fewer images at once or another device helps."""
