"""The generation engine: one loaded model per process, text-to-image and img2img, reproducible PNGs.

`get_engine(settings.model)` returns the process's engine; `engine.generate(request)` validates the
request, loads the model on first use, runs text-to-image (no init image) or img2img (an init image
and a strength), and returns the image, its PNG (with A1111 `parameters` and `provenance` chunks) and
the provenance record. Requests are serialized by a lock, so the UI and the evolution scheduler can
call at once; each waits its turn.

Determinism: noise comes from a CPU torch.Generator seeded with the request's seed, so the same
inputs give the same PNG bytes on the same machine and software (and the same composition on GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from metadata.png import PngLatents, a1111_parameters, encode_png, read_png_latents
from studio.config import ModelSettings
from studio.generation.attention import BlockedAttnProcessor
from studio.generation.cpu import CpuPlan, plan_for
from studio.generation.devices import Placement, resolve_placement
from studio.generation.download import DownloadProgress
from studio.generation.errors import (
    CorruptModelError,
    GenerationCancelled,
    GenerationError,
    InvalidRequestError,
    OutOfMemoryError,
)
from studio.generation.fusion import fuse_conv_relu
from studio.generation.half_storage import store_half
from studio.generation.heap import return_freed_memory
from studio.generation.loading import PIPELINES, LoadedModel, is_local_path, load_model, read_unread_vae
from studio.generation.prepack import prepack, prepack_supported
from studio.generation.presets import PRESETS, Preset, uses_tiny_decoder
from studio.generation.winograd import F2, F4, winograd_convs

log = logging.getLogger(__name__)

MIN_SIDE = 64
MAX_SEED = 2**64 - 1
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 4000  # the provenance schema's limit (metadata/schemas)

ProgressCallback = Callable[[int, int], None]
# on_stage(stage, details), as the request moves: "waiting" {ahead, position} while other requests run
# first, "loading" {model}, "downloading" {model, done_bytes, total_bytes, rate, eta_s, file, files_done,
# files_total, finished} while a hub model not cached yet is fetched (at most ~4 a second; a request
# waiting its turn hears it too, with its ahead and position), "encoding prompt", "encoding image",
# "denoising" {step, total} (step 0 as the loop starts, then after each step), "decoding". Called from the
# generating thread.
StageCallback = Callable[[str, dict[str, Any]], None]
_STAGE_NAMES = {"text_encoder": "encoding prompt", "encoder": "encoding image", "decoder": "decoding"}
# The UNet's 3x3 convolutions Winograd takes: the 320- and 640-channel levels and the 640<->1280 ones
# between them (weights up to 42 MiB; UNet call 4.76 -> 4.52 s held to AVX2 against 24 MiB, +300 MiB);
# the 1280-channel ones (56-112 MiB each) would need 4x their memory for a small gain at 8x8 and 16x16.
UNET_WINOGRAD_MAX_WEIGHT_BYTES = 48 * 2**20


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """What to generate. None means "the model's usual value" (resolved values go into the record).

    Text-to-image when `init_image` is None; img2img from `init_image` otherwise, where `strength`
    (0 < s <= 1) says how far the image may move and `init_image_cid` names it in provenance.
    """

    prompt: str
    seed: int
    negative_prompt: str = ""
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    preset: str | None = None  # "fast" or "quality" (PRESETS); checked when the request is resolved
    init_image: Image.Image | None = None
    init_image_cid: str | None = None
    strength: float | None = None
    # The latents `init_image` was decoded from (metadata.png.read_png_latents of its PNG). When they
    # match the model's latent space and the size, img2img starts from them: no VAE encoder pass, no
    # encode/decode drift. Otherwise the pixels are encoded as usual.
    init_latents: PngLatents | None = None

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None


@dataclass(frozen=True, kw_only=True)
class ResolvedRequest:
    """A request's values after checking, the model's usual values filled in (what the pipeline runs)."""

    preset: Preset
    img2img: bool
    steps: int
    guidance_scale: float
    width: int
    height: int
    strength: float | None


@dataclass(frozen=True, kw_only=True)
class GenerationRecord:
    """The provenance `generation` block of one image: exactly the properties of `$defs/generation` in
    metadata/schemas/token-metadata.schema.json, in the order they are written (a test checks the two
    agree). `as_schema_dict()` is the JSON object the PNG and the token metadata carry."""

    model_id: str
    model_revision: str | None
    weights_sha256: str | None
    pipeline: str
    scheduler: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    seed: int
    width: int
    height: int
    strength: float | None
    init_image: str | None  # ipfs://<cid> of the init image (img2img)
    init_from: Literal["latents", "pixels"] | None  # what img2img started from
    preset: Preset
    decoder: str  # the tiny autoencoder's name, or "vae"
    device: str
    dtype: str
    cpu_optimizations: tuple[str, ...]
    libraries: Mapping[str, str]

    def as_schema_dict(self) -> dict[str, Any]:
        """The record as the schema's JSON object (a fresh dict: changing it changes nothing here)."""
        record = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        record["cpu_optimizations"] = list(self.cpu_optimizations)
        record["libraries"] = dict(self.libraries)
        return record


@dataclass
class GenerationResult:
    """One generated image, its PNG, its provenance `generation` record, warnings and timings (seconds)."""

    image: Image.Image
    png: bytes
    generation: GenerationRecord
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    nsfw: bool = False
    latents: PngLatents | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The generation record as the JSON object provenance carries (`generation.as_schema_dict()`)."""
        return self.generation.as_schema_dict()

    def png_with(self, provenance_extra: dict[str, Any]) -> bytes:
        """The PNG again, its provenance chunk holding `provenance_extra` (version, previous,
        feed_snapshot...) around this image's generation record. `created_at` is left out so the
        same inputs give the same bytes."""
        provenance = {key: value for key, value in provenance_extra.items() if key != "created_at"}
        provenance["generation"] = self.record
        return encode_png(
            self.image, parameters=a1111_parameters(self.record), provenance=provenance, latents=self.latents
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide the pixels, for provenance."""
    versions: dict[str, str] = {}
    for name in ("diffusers", "torch", "transformers"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    versions["torch"] = versions.get("torch", torch.__version__).split("+")[0]
    return versions


def is_few_step_model(model: LoadedModel) -> bool:
    """Whether the model is distilled to make an image in 1-4 steps without guidance (SD-Turbo,
    SDXL-Turbo and the like): its defaults are then 1 step (img2img: enough for one step at the
    strength) and guidance 0, instead of 25 steps at guidance 7.5.

    The model's own scheduler config says so first: sd-turbo and sdxl-turbo ship Euler with
    `timestep_spacing = "trailing"` (the last step lands on the last training timestep, which a
    1-step model needs), where full-step models ship "leading" or "linspace". Zero-terminal-SNR
    fine-tunes also use trailing spacing, but with `rescale_betas_zero_snr`, and they want many steps.
    Where the config does not say it (a single .safetensors file loaded offline gets diffusers'
    default scheduler config), "turbo" in the model id is the fallback."""
    config = getattr(model.pipe.scheduler, "config", None) or {}
    if config.get("timestep_spacing") == "trailing" and not config.get("rescale_betas_zero_snr", False):
        return True
    return "turbo" in model.model_id.lower()


def public_model_name(model_id: str) -> str:
    """The hub id as is; for a local folder or file only its name (the weights hash identifies it)."""
    if is_local_path(model_id):
        return Path(model_id).name or model_id
    return model_id


class _Cancelled(Exception):
    """Raised inside the pipeline's step callback to stop the denoising loop."""


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


class _StageTimer:
    """Adds up the time spent in the text encoder(s), the UNet and the VAE encoder/decoder."""

    def __init__(self, on_start: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_start = on_start  # told each time a stage starts (the stages the user sees come from here)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextlib.contextmanager
    def module(self, stage: str, module: torch.nn.Module | None) -> Iterator[None]:
        if module is None:
            yield
            return
        started: list[float] = []

        def before(*_args: Any, **_kwargs: Any) -> None:
            if self.on_start is not None:
                self.on_start(stage)
            started.append(time.perf_counter())

        def after(*_args: Any, **_kwargs: Any) -> None:
            if started:
                self.add(stage, time.perf_counter() - started.pop())

        handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def method(self, stage: str, owner: Any, name: str) -> Iterator[None]:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.on_start is not None:
                self.on_start(stage)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start)

        setattr(owner, name, timed)
        try:
            yield
        finally:
            delattr(owner, name)  # back to the class's method


class Engine:
    """One Stable Diffusion model, loaded once, serving requests one at a time."""

    def __init__(self, model_settings: ModelSettings, *, skip_cpu_optimizations: Collection[str] = ()) -> None:
        """skip_cpu_optimizations: CpuPlan fields to leave off (for benchmarks measuring each one's share)."""
        self.settings = model_settings
        self._skip_cpu_optimizations = tuple(skip_cpu_optimizations)
        self._lock = threading.Lock()
        # Requests take turns in arrival order; the first ticket is the running request's, so a
        # waiting one can say how many are ahead of it.
        self._turns = threading.Condition()
        self._tickets: list[object] = []
        self._model: LoadedModel | None = None
        self._download: DownloadProgress | None = None  # of the model, while it is being fetched
        self._pipes: dict[tuple[bool, bool], Any] = {}
        self.load_seconds: float | None = None

    # -- loading ------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """True once the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (generate() does it on first use). Raises ModelNotAvailableError,
        CorruptModelError or UnsupportedCheckpointError with the fix; a later call may try again."""
        with self._lock:
            self._load_locked()

    def _load_locked(self, on_stage: StageCallback | None = None) -> LoadedModel:
        if self._model is not None:
            return self._model
        start = time.perf_counter()
        placement = resolve_placement(self.settings.device, self.settings.dtype, self.settings.memory)
        try:
            model = load_model(self.settings, placement, on_download=self._download_reporter(on_stage))
            if placement.device == "cpu":
                self._prepare_for_cpu(model)
        except GenerationError:
            gc.collect()
            raise
        except Exception as exc:
            gc.collect()
            if _is_out_of_memory(exc):
                raise OutOfMemoryError(
                    f"Not enough memory to load {self.settings.model_id} in {placement.dtype_name} on "
                    f"{placement.device}: close other programs, choose a smaller model, or set "
                    "STUDIO_MODEL__DTYPE=float16/bfloat16."
                ) from exc
            raise
        finally:
            with self._turns:
                self._download = None  # done or failed: waiting requests stop showing it
        self._model = model
        self._pipes = {}
        self.load_seconds = time.perf_counter() - start
        log.info(
            "loaded %s (%s) on %s in %s in %.1f s",
            model.model_id,
            model.family,
            placement.device,
            placement.dtype_name,
            self.load_seconds,
        )
        return model

    def _download_reporter(self, on_stage: StageCallback | None) -> Callable[[DownloadProgress], None]:
        """Tells the loading request's on_stage, and the requests waiting their turn, how the model's
        download goes; once it is done the stage is "loading" again."""

        def report(progress: DownloadProgress) -> None:
            with self._turns:
                self._download = None if progress.finished else progress
                self._turns.notify_all()
            if on_stage is not None:
                on_stage("downloading", progress.details())
                if progress.finished:
                    on_stage("loading", {"model": public_model_name(self.settings.model_id)})

        return report

    def _prepare_for_cpu(self, model: LoadedModel) -> None:
        # oneDNN's convolutions prefer NHWC: it speeds up both decoders on CPU (the full VAE's:
        # _optimize_full_vae). (torch.nn.Module.to: diffusers' own .to() warns about dtype casts.)
        if model.tiny_vae is not None:
            torch.nn.Module.to(model.tiny_vae, memory_format=torch.channels_last)  # type: ignore[call-overload]
        plan = plan_for(
            model.placement.dtype,
            optimize=self.settings.cpu_optimizations,
            without=self._skip_cpu_optimizations,
            weight_dtype=model.placement.weight_dtype,
            encoder_weight_dtype=model.placement.encoder_weight_dtype,
        )
        model.dtype_warnings = list(plan.warnings)
        model.cpu_optimizations = _optimize_for_cpu(model, plan)

    def unload(self) -> None:
        """Free the model's memory (waits for a running request); the next generate() loads it again."""
        with self._lock:
            self._model = None
            self._pipes = {}
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        """Model, device and dtype for the Settings tab; does not load anything."""
        model = self._model
        if model is not None:
            return {
                "model_id": model.model_id,
                "source": model.source,
                "family": model.family,
                "revision": model.model_revision,
                "weights_sha256": model.weights_sha256,
                "device": model.placement.device,
                "dtype": model.placement.dtype_name,
                "preset": self.settings.preset,
                "tiny_autoencoder": model.tiny_vae_id if model.tiny_vae is not None else None,
                "cpu_optimizations": list(model.cpu_optimizations),
                "loaded": True,
                "warnings": [*model.dtype_warnings, *model.warnings],
            }
        try:
            placement: Placement | None = resolve_placement(
                self.settings.device, self.settings.dtype, self.settings.memory
            )
        except GenerationError:
            placement = None
        return {
            "model_id": self.settings.model_id,
            "source": None,
            "family": None,
            "revision": self.settings.revision,
            "weights_sha256": None,
            "device": placement.device if placement else self.settings.device,
            "dtype": placement.dtype_name if placement else self.settings.dtype,
            "preset": self.settings.preset,
            "tiny_autoencoder": self.settings.tiny_autoencoder_id,
            "cpu_optimizations": [],
            "loaded": False,
            "warnings": [],
        }

    # -- requests -----------------------------------------------------------------------------------

    def _pipe(self, model: LoadedModel, img2img: bool, tiny: bool) -> Any:
        """Text-to-image or img2img with the full or tiny decoder, all sharing the loaded weights."""
        key = (img2img, tiny)
        if not tiny and model.unread_vae is not None:
            self._read_full_vae(model)
        if not tiny and model.winograd_vae_pending:
            model.winograd_vae_pending = False
            if winograd_convs(model.pipe.vae) and "winograd_conv" not in model.cpu_optimizations:
                model.cpu_optimizations.append("winograd_conv")
        if key not in self._pipes:
            cls = PIPELINES[model.family][1 if img2img else 0]
            extra: dict[str, Any] = {"vae": model.tiny_vae} if tiny else {}
            # from_pipe casts every shared module to its dtype argument, float32 when not given:
            # without it the first fast request would silently turn the shared bf16 weights into fp32.
            pipe = (
                model.pipe
                if not img2img and not tiny
                else cls.from_pipe(model.pipe, dtype=model.placement.dtype, **extra)
            )
            pipe.set_progress_bar_config(disable=True)
            self._pipes[key] = pipe
        return self._pipes[key]

    def _read_full_vae(self, model: LoadedModel) -> None:
        """The full VAE, left on disk at load while the tiny autoencoder decodes, read on its first use."""
        try:
            read_unread_vae(model)
        except CorruptModelError:
            # Half read, or from files that are no longer the ones loaded: the next request loads again.
            self._model = None
            self._pipes = {}
            gc.collect()
            raise
        if model.cpu_plan is not None:
            _optimize_full_vae(model, model.cpu_plan)

    def _native_side(self, model: LoadedModel) -> int:
        pipe = model.pipe
        return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)

    def _resolve(self, request: GenerationRequest, model: LoadedModel) -> ResolvedRequest:
        """Check every field and fill in the model's usual values; InvalidRequestError names the fix."""
        s = self.settings
        if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
            raise InvalidRequestError("prompt and negative_prompt must be text.")
        for what, text in (("prompt", request.prompt), ("negative_prompt", request.negative_prompt)):
            if len(text) > MAX_PROMPT_CHARS:
                raise InvalidRequestError(
                    f"{what} is {len(text)} characters; at most {MAX_PROMPT_CHARS} fit in a token's provenance "
                    "(and the text encoder reads only its first 75 tokens): shorten it."
                )
        if isinstance(request.seed, bool) or not isinstance(request.seed, int) or not 0 <= request.seed <= MAX_SEED:
            raise InvalidRequestError(f"seed must be a whole number from 0 to {MAX_SEED}, got {request.seed!r}.")
        preset = request.preset or s.preset
        if preset not in PRESETS:
            raise InvalidRequestError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
        img2img = request.init_image is not None
        if not img2img and (request.strength is not None or request.init_image_cid is not None):
            raise InvalidRequestError("strength and init_image_cid need an init_image (img2img); leave them out.")
        if img2img and not isinstance(request.init_image, Image.Image):
            raise InvalidRequestError("init_image must be a PIL image.")
        turbo = is_few_step_model(model)
        strength = request.strength
        if img2img:
            if strength is None:
                raise InvalidRequestError("img2img needs a strength between 0 (keep the image) and 1 (replace it).")
            if not (isinstance(strength, int | float) and 0.0 < float(strength) <= 1.0):
                raise InvalidRequestError(f"strength must be above 0 and at most 1, got {strength!r}.")
            strength = float(strength)
        steps = request.steps
        if steps is None:
            steps = (max(1, math.ceil(1.0 / strength)) if img2img and strength else 1) if turbo else 25
            steps = min(steps, s.max_steps)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= s.max_steps:
            raise InvalidRequestError(f"steps must be a whole number from 1 to {s.max_steps}, got {steps!r}.")
        if img2img and strength is not None and int(steps * strength) < 1:
            raise InvalidRequestError(
                f"{steps} steps at strength {strength} runs no denoising step (img2img runs steps × strength): "
                f"use at least {math.ceil(1.0 / strength)} steps or a higher strength."
            )
        guidance = request.guidance_scale
        if guidance is None:
            guidance = 0.0 if turbo else 7.5
        if not isinstance(guidance, int | float) or not math.isfinite(guidance) or not 0.0 <= guidance <= MAX_GUIDANCE:
            raise InvalidRequestError(f"guidance_scale must be from 0 to {MAX_GUIDANCE:g}, got {guidance!r}.")
        default_w = request.init_image.width if request.init_image is not None else self._native_side(model)
        default_h = request.init_image.height if request.init_image is not None else self._native_side(model)
        width = request.width if request.width is not None else default_w
        height = request.height if request.height is not None else default_h
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequestError(f"{name} must be a whole number of pixels, got {value!r}.")
            if value % 8:
                raise InvalidRequestError(
                    f"{name} {value} is not a multiple of 8 (the model works on 8×8 pixel latents): "
                    f"use {value - value % 8} or {value - value % 8 + 8}."
                )
            if not MIN_SIDE <= value <= s.max_side:
                raise InvalidRequestError(
                    f"{name} {value} is outside {MIN_SIDE}..{s.max_side} pixels (model.max_side in the settings)."
                )
        return ResolvedRequest(
            preset=preset,
            img2img=img2img,
            steps=steps,
            guidance_scale=float(guidance),
            width=width,
            height=height,
            strength=strength,
        )

    def _prompt_warnings(self, pipe: Any, prompt: str, what: str) -> list[str]:
        """The text encoder reads a fixed number of tokens; say what was cut instead of dropping it silently."""
        warnings: list[str] = []
        tokenizer = pipe.tokenizer
        limit = int(tokenizer.model_max_length)
        ids = tokenizer(prompt, truncation=False, add_special_tokens=True).input_ids
        if len(ids) > limit:
            dropped = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True).strip()
            warnings.append(
                f"The {what} is {len(ids) - 2} tokens long but the text encoder reads only {limit - 2}; "
                f"the end was ignored: {dropped!r}. Shorten the {what} to keep all of it."
            )
        return warnings

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_stage: StageCallback | None = None,
    ) -> GenerationResult:
        """Generate one image. progress(step, total) is called after each denoising step and
        on_stage(stage, details) as the request moves (see StageCallback); setting `cancel` stops the
        run at the next step with GenerationCancelled. Requests wait their turn, first come first served."""
        queued = time.perf_counter()
        ticket = self._take_turn(on_stage, cancel)
        try:
            return self._generate_locked(request, queued, progress, cancel, on_stage)
        finally:
            with self._turns:
                self._tickets.remove(ticket)
                self._turns.notify_all()

    def _take_turn(self, on_stage: StageCallback | None, cancel: threading.Event | None) -> object:
        """Wait until every request that came earlier is done; say how many are ahead while waiting."""
        ticket = object()
        told: tuple[int, DownloadProgress | None] | None = None
        with self._turns:
            self._tickets.append(ticket)
            while (ahead := self._tickets.index(ticket)) > 0:
                if cancel is not None and cancel.is_set():
                    self._tickets.remove(ticket)
                    self._turns.notify_all()
                    raise GenerationCancelled("The generation was cancelled while it waited for its turn.")
                # While the request ahead fetches the model, this one waits for the same download.
                now = (ahead, self._download)
                if on_stage is not None and now != told:
                    if self._download is not None:
                        on_stage("downloading", {**self._download.details(), "ahead": ahead, "position": ahead + 1})
                    else:
                        on_stage("waiting", {"ahead": ahead, "position": ahead + 1})
                    told = now
                self._turns.wait(timeout=0.5)
        return ticket

    def _generate_locked(
        self,
        request: GenerationRequest,
        queued: float,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        on_stage: StageCallback | None,
    ) -> GenerationResult:
        with self._lock:
            started = time.perf_counter()
            timings: dict[str, float] = {"queued": started - queued}
            fresh_load = self._model is None
            if fresh_load and on_stage is not None:
                on_stage("loading", {"model": public_model_name(self.settings.model_id)})
            model = self._load_locked(on_stage)
            if fresh_load and self.load_seconds is not None:
                timings["load"] = self.load_seconds
            values = self._resolve(request, model)
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("The generation was cancelled before it started.")
            try:
                result = self._run(model, request, values, timings, progress, cancel, on_stage)
            except _Cancelled as exc:
                raise GenerationCancelled("The generation was cancelled; no image was made.") from exc
            except GenerationError:
                raise
            except Exception as exc:
                if _is_out_of_memory(exc):
                    gc.collect()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    raise OutOfMemoryError(
                        f"Out of memory generating {values.width}×{values.height} on "
                        f"{model.placement.device}: use a smaller size, the fast preset, or free memory "
                        "(other programs, other models on the GPU) and try again."
                    ) from exc
                raise
            timings["total"] = time.perf_counter() - started
            result.timings = timings
            return result

    def _run(
        self,
        model: LoadedModel,
        request: GenerationRequest,
        values: ResolvedRequest,
        timings: dict[str, float],
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        on_stage: StageCallback | None = None,
    ) -> GenerationResult:
        preset = values.preset
        tiny = uses_tiny_decoder(preset, model.tiny_vae is not None)
        pipe = self._pipe(model, values.img2img, tiny)
        warnings: list[str] = list(model.dtype_warnings)
        if preset == "fast" and not tiny:
            warnings.extend(model.warnings)
        warnings += self._prompt_warnings(pipe, request.prompt, "prompt")
        if request.negative_prompt:
            warnings += self._prompt_warnings(pipe, request.negative_prompt, "negative prompt")

        final: dict[str, Any] = {}

        def on_step_end(pipeline: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            final["latents"] = callback_kwargs["latents"]  # after the last step: what the decoder gets
            if progress is not None:
                progress(step + 1, int(pipeline.num_timesteps))
            if on_stage is not None:
                on_stage("denoising", {"step": step + 1, "total": int(pipeline.num_timesteps)})
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            return callback_kwargs

        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": values.steps,
            "guidance_scale": values.guidance_scale,
            "generator": torch.Generator("cpu").manual_seed(request.seed),
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        space = latent_space(model)
        init_from: Literal["latents", "pixels"] | None = None
        if request.init_image is not None:  # img2img
            init_latents = self._usable_latents(model, request.init_latents, space, values)
            if init_latents is not None:
                init_from = "latents"
                kwargs.update(image=init_latents, strength=values.strength)
            else:
                init_from = "pixels"
                init = request.init_image.convert("RGB")
                if init.size != (values.width, values.height):
                    init = init.resize((values.width, values.height), Image.Resampling.LANCZOS)
                kwargs.update(image=init, strength=values.strength)
        else:
            kwargs.update(width=values.width, height=values.height)

        announced: set[str] = set()

        def stage_started(stage: str) -> None:
            # The UNet runs once per step and the text encoder once per prompt: only the first call starts
            # a stage (denoising steps come from on_step_end).
            if stage in announced:
                return
            announced.add(stage)
            if stage == "decoder" and model.placement.saves_memory:
                # The denoiser's freed buffers, before the decoder's large ones (see below).
                return_freed_memory()
            if on_stage is None:
                return
            if stage == "unet":
                on_stage("denoising", {"step": 0, "total": int(getattr(pipe, "num_timesteps", 0) or values.steps)})
            else:
                on_stage(_STAGE_NAMES.get(stage, stage), {})

        timer = _StageTimer(stage_started)
        vae = pipe.vae
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(timer.module("text_encoder", pipe.text_encoder))
            stack.enter_context(timer.module("text_encoder", getattr(pipe, "text_encoder_2", None)))
            stack.enter_context(timer.module("unet", pipe.unet))
            stack.enter_context(timer.method("decoder", vae, "decode"))
            stack.enter_context(timer.method("encoder", vae, "encode"))
            output = pipe(**kwargs)
        timings["pipeline"] = time.perf_counter() - start
        timings.update(timer.seconds)
        if model.placement.saves_memory:
            # glibc's heap keeps what an image's buffers leave behind: without this, sd-turbo in float32
            # (memory "balanced", held to AVX2) settled 0.2 GiB higher after the first image and 0.4 after
            # the second. Returning it costs page faults when the next image reuses it (studio/generation/heap.py).
            return_freed_memory()

        image: Image.Image = output.images[0]
        nsfw = bool(getattr(output, "nsfw_content_detected", None) and output.nsfw_content_detected[0])
        if nsfw:
            warnings.append(
                "The model's safety checker flagged this image and replaced it with a black image. Change the "
                "prompt or seed (or turn model.safety_checker off in the settings if you accept the risk)."
            )
        record = GenerationRecord(
            # A local path would publish the artist's folder layout (often their user name): name only.
            model_id=public_model_name(model.model_id),
            model_revision=model.model_revision,
            weights_sha256=model.weights_sha256,
            pipeline=type(pipe).__name__,
            scheduler=type(pipe.scheduler).__name__,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=values.steps,
            guidance_scale=values.guidance_scale,
            seed=request.seed,
            width=values.width,
            height=values.height,
            strength=values.strength,
            init_image=f"ipfs://{request.init_image_cid}" if request.init_image_cid else None,
            init_from=init_from,
            preset=preset,
            decoder=public_model_name(model.tiny_vae_id or "") if tiny else "vae",
            device=model.placement.device,
            dtype=model.placement.dtype_name,
            cpu_optimizations=tuple(model.cpu_optimizations),
            libraries=library_versions(),
        )
        # A flagged image was replaced by black pixels: its latents would bring the content back.
        latents = None if nsfw or "latents" not in final else _to_png_latents(final["latents"], space)
        png_start = time.perf_counter()
        document = record.as_schema_dict()
        png = encode_png(
            image, parameters=a1111_parameters(document), provenance={"generation": document}, latents=latents
        )
        timings["png"] = time.perf_counter() - png_start
        return GenerationResult(image=image, png=png, generation=record, warnings=warnings, nsfw=nsfw, latents=latents)

    def _usable_latents(
        self, model: LoadedModel, latents: PngLatents | None, space: str, values: ResolvedRequest
    ) -> torch.Tensor | None:
        """The init latents as a tensor when they fit this model and size; None means encode the pixels."""
        if latents is None or latents.space != space:
            return None
        factor = int(model.pipe.vae_scale_factor)
        channels = int(model.pipe.vae.config.latent_channels)
        if latents.shape != (1, channels, values.height // factor, values.width // factor):
            return None
        array = np.frombuffer(latents.float16, dtype="<f2").reshape(latents.shape)
        return torch.from_numpy(array.astype(np.float32)).to(model.placement.device, model.placement.dtype)


def _inference_modules(model: LoadedModel) -> list[torch.nn.Module]:
    """The modules a request runs but the full VAE (see _optimize_full_vae): text encoders, UNet and tiny
    autoencoder (not the safety checker)."""
    pipe = model.pipe
    names = ("text_encoder", "text_encoder_2", "unet")
    modules = [getattr(pipe, name, None) for name in names] + [model.tiny_vae]
    return [module for module in modules if module is not None]


def _optimize_for_cpu(model: LoadedModel, plan: CpuPlan) -> list[str]:
    """Apply the plan chosen for this CPU and dtype (studio/generation/cpu.py) to a model just loaded
    on the CPU; returns the names provenance records.

    Each changes the last bits of some values (rounding happens in another order), so an image's
    provenance says which were on (STUDIO_MODEL__CPU_OPTIMIZATIONS=false reproduces one made without).
    The full VAE gets its share from _optimize_full_vae, now or when it is read on first use."""
    if plan.fp16_weight_storage:
        # The loader stored what it streamed in float16 already; this takes the rest (store_half skips
        # what is done). The tiny autoencoder's 10 MB are left in float32.
        stored = sum(store_half(module) for module in _inference_modules(model) if module is not model.tiny_vae)
        log.info("%d layers keep their weights in float16 (STUDIO_MODEL__MEMORY)", stored)
    elif plan.fp16_encoder_storage:
        # First: the optimizations below take exact nn.Linear and nn.Conv2d layers only, so they leave
        # these float16-stored ones alone. Streamed, they are float16 already: this wraps their layers.
        # Their linears on oneDNN's matmul where the denoiser's are prepacked for it.
        encoders = [getattr(model.pipe, name, None) for name in ("text_encoder", "text_encoder_2")]
        stored = sum(store_half(m, onednn_linears=_onednn_half_linears(plan)) for m in encoders if m is not None)
        log.info("%d layers of the text encoders keep their weights in float16", stored)
    if not plan.fp16_weight_storage:
        plan = _optimize_kernels(model, plan)
    model.cpu_plan = plan
    if model.unread_vae is None:
        _optimize_full_vae(model, plan)
    return plan.names


def _onednn_half_linears(plan: CpuPlan) -> bool:
    return plan.prepack_linears and prepack_supported(torch.float32)


def _optimize_kernels(model: LoadedModel, plan: CpuPlan) -> CpuPlan:
    """The kernel choices of the plan for every module but the full VAE; returns the plan as it ran."""
    swapped = 0
    if plan.winograd_convs and model.placement.dtype == torch.float32:
        # Before prepacking, which takes the convolutions left. UNet: only its outer levels, where the
        # activations are large beside the weights (which Winograd makes 4x larger).
        # With memory "balanced", as F(2x2,3x3): 16/9 of the weights instead of 4x.
        unet_scheme = F2 if plan.winograd_f2 else F4
        swapped = winograd_convs(model.pipe.unet, scheme=unet_scheme, max_weight_bytes=UNET_WINOGRAD_MAX_WEIGHT_BYTES)
        log.info("%d 3x3 convolutions of the denoiser computed with Winograd %s", swapped, unet_scheme.name)
        if model.tiny_vae is not None:
            swapped += winograd_convs(model.tiny_vae)
        # The full VAE's transformed weights take about 550 MiB more: only once it is used (Engine._pipe).
        model.winograd_vae_pending = True
    if not (plan.winograd_convs and model.placement.dtype == torch.float32 and swapped):
        plan = dataclasses.replace(plan, winograd_convs=False)  # provenance records only what ran
    # Before prepacking too: the fused layers hold their weights themselves, and prepack leaves them be.
    fused = fuse_conv_relu(model.tiny_vae) if plan.fused_conv_relu and model.tiny_vae is not None else 0
    if not fused:
        plan = dataclasses.replace(plan, fused_conv_relu=False)
    packing = plan.prepack_convs or plan.prepack_linears or plan.prepack_convs_by_size
    if packing and prepack_supported(model.placement.dtype):
        # Packed by size: the UNet's convolutions only (the tiny autoencoder's are fused).
        swapped = sum(
            prepack(
                module,
                convs=plan.prepack_convs,
                linears=plan.prepack_linears,
                convs_by_size=plan.prepack_convs_by_size and module is model.pipe.unet,
            )
            for module in _inference_modules(model)
        )
        log.info("prepacked %d weights for oneDNN (%s)", swapped, ", ".join(plan.names))
    else:
        plan = dataclasses.replace(plan, prepack_convs=False, prepack_linears=False, prepack_convs_by_size=False)
    if plan.blocked_attention:
        model.pipe.unet.set_attn_processor(BlockedAttnProcessor())
    if plan.channels_last_unet:
        # The pipelines hand the UNet NCHW latents; from a channels-last input every convolution,
        # norm and element-wise op after it keeps NHWC, and the transformer blocks' NHWC reshapes
        # become views instead of copies.
        model.pipe.unet.register_forward_pre_hook(_channels_last_sample, with_kwargs=True)
    return plan


def _optimize_full_vae(model: LoadedModel, plan: CpuPlan) -> None:
    """The plan as it ran (_optimize_for_cpu) applied to the full VAE: at load, or when it is read on its
    first use, so its images are the same either way."""
    vae = model.pipe.vae
    # oneDNN's convolutions prefer NHWC, as the tiny autoencoder's (Engine._prepare_for_cpu).
    # (torch.nn.Module.to: diffusers' own .to() warns about dtype casts that this is not.)
    torch.nn.Module.to(vae, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if plan.fp16_weight_storage:
        store_half(vae)
        return
    if plan.fp16_encoder_storage:
        # Not taken by the kernels below (exact nn.Linear and nn.Conv2d only); Winograd widens its
        # convolutions on first use (Engine._pipe).
        stored = store_half(vae, onednn_linears=_onednn_half_linears(plan))
        log.info("%d layers of the VAE keep their weights in float16", stored)
    if plan.prepack_convs or plan.prepack_linears:
        # (Not by size: the full VAE's wide 3x3 convolutions are Winograd's, on its first use.)
        prepack(vae, convs=plan.prepack_convs, linears=plan.prepack_linears)
    if plan.blocked_attention:
        vae.set_attn_processor(BlockedAttnProcessor())


def _channels_last_sample(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A forward pre-hook: the UNet's `sample` (first argument or keyword) in channels-last layout."""
    if args:
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    elif "sample" in kwargs:
        kwargs = {**kwargs, "sample": kwargs["sample"].contiguous(memory_format=torch.channels_last)}
    return args, kwargs


def init_image_from_png(png: bytes) -> tuple[Image.Image, PngLatents | None]:
    """img2img's inputs from a PNG: the RGB image and, when the PNG carries them (every PNG this
    engine made does), the latents it was decoded from."""
    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    return image, read_png_latents(png)


def latent_space(model: LoadedModel) -> str:
    """Names the latent space a model denoises in: latents from one model fit another only when equal.
    The tiny autoencoder decodes the same space, so it does not enter the name."""
    vae = model.pipe.vae.config
    return f"{model.family}:{vae.latent_channels}:{vae.scaling_factor}"


def _to_png_latents(latents: torch.Tensor, space: str) -> PngLatents:
    array = latents.detach().to("cpu", torch.float32).numpy().astype("<f2")
    return PngLatents(space=space, shape=tuple(array.shape), float16=array.tobytes())


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine(model_settings: ModelSettings) -> Engine:
    """The process's one engine, created on first call. Called with different model settings (the
    Settings tab changed the model), the old engine's weights are released and a new one is made."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is not None and _ENGINE.settings != model_settings:
            _ENGINE.unload()
            _ENGINE = None
        if _ENGINE is None:
            _ENGINE = Engine(model_settings)
        return _ENGINE
