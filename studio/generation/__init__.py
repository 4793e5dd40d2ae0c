"""Stable Diffusion generation: loading, presets, text-to-image, img2img and the provenance record."""

from studio.generation.engine import (
    Engine,
    GenerationRecord,
    GenerationRequest,
    GenerationResult,
    ResolvedRequest,
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
    "GenerationRecord",
    "GenerationRequest",
    "GenerationResult",
    "InvalidRequestError",
    "ModelNotAvailableError",
    "OutOfMemoryError",
    "ResolvedRequest",
    "StageCallback",
    "UnsupportedCheckpointError",
    "get_engine",
    "init_image_from_png",
]
