"""Stable Diffusion generation: loading, presets, text-to-image, img2img and the provenance record."""

from studio.generation.engine import (
    Engine,
    GenerationRequest,
    GenerationResult,
    StageCallback,
    get_engine,
    init_image_from_png,
)
from studio.generation.errors import (
    CorruptModelError,
    GenerationCancelled,
    GenerationError,
    InvalidRequestError,
    ModelNotAvailableError,
    OutOfMemoryError,
    UnsupportedCheckpointError,
)

__all__ = [
    "CorruptModelError",
    "Engine",
    "GenerationCancelled",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "InvalidRequestError",
    "ModelNotAvailableError",
    "OutOfMemoryError",
    "StageCallback",
    "UnsupportedCheckpointError",
    "get_engine",
    "init_image_from_png",
]
