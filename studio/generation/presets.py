"""The two presets and what each changes.

The weights (dtype, device) are shared by both presets, because text-to-image and img2img, fast and
quality all run on one loaded copy of the model. A preset picks the decoder:

- `fast`: the tiny autoencoder (AutoencoderTiny, e.g. madebyollin/taesd) when it is available. On CPU
  the full VAE decode is most of the time of a 1-step image; TAESD makes it nearly free.
- `quality`: the model's own full VAE.

Both run under torch.inference_mode, and on CPU the decoders use channels_last, which oneDNN's
convolutions prefer (the UNet stays contiguous: channels_last there made a transient copy of its
weights and was no faster). Both also get the engine's CPU optimizations (prepack.py, attention.py).
"""

from __future__ import annotations

from typing import Literal

Preset = Literal["fast", "quality"]
PRESETS: tuple[Preset, ...] = ("fast", "quality")


def uses_tiny_decoder(preset: Preset, tiny_available: bool) -> bool:
    """Whether this preset decodes with the tiny autoencoder."""
    return preset == "fast" and tiny_available
