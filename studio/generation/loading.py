"""Finding and loading a Stable Diffusion model: a hub id, a local diffusers folder or one .safetensors file.

All three end in the same place: a text-to-image pipeline of the right family (SD 1.x/2.x/Turbo or
SDXL/SDXL-Turbo, chosen from the model's own config), in the chosen dtype, on the chosen device,
plus what provenance needs to name the exact weights (hub revision or a sha256 of the weight files).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderTiny,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)

from studio.config import ModelSettings
from studio.generation.cpu import CpuPlan
from studio.generation.devices import Placement, resolve_placement
from studio.generation.download import (
    DownloadProgress,
    cached_snapshot,
    fetch_model,
    fetch_pipeline,
    hub_cache_dir,
)
from studio.generation.errors import (
    CorruptModelError,
    DownloadInterruptedError,
    ModelNotAvailableError,
    UnsupportedCheckpointError,
)

log = logging.getLogger(__name__)

Family = Literal["sd", "sdxl"]

# Pipeline classes per family: (text-to-image, img2img). Both share one set of weights via from_pipe.
PIPELINES: dict[Family, tuple[type[Any], type[Any]]] = {
    "sd": (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline),
    "sdxl": (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline),
}
_FAMILY_OF_CLASS: dict[str, Family] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
_WEIGHT_SUFFIXES = {".safetensors", ".bin"}

# The tiny autoencoder for SDXL latents is a different model from the SD one.
_TINY_FOR_SDXL = {"madebyollin/taesd": "madebyollin/taesdxl"}

_POINT_AT_MODEL = (
    "Set STUDIO_MODEL__MODEL_ID (or [model] model_id in studio.toml) to a Hugging Face hub id such as "
    "stabilityai/sd-turbo (downloaded once while online, then cached), a local diffusers folder (the one "
    "holding model_index.json), or a single .safetensors checkpoint file."
)


@dataclass
class LoadedModel:
    """A loaded text-to-image pipeline and the facts provenance records about it."""

    # A DiffusionPipeline; its components (unet, vae, scheduler...) are attributes it registers at run
    # time, which mypy cannot see, so the pipeline is handled as Any.
    pipe: Any
    family: Family
    model_id: str
    model_revision: str | None
    weights_sha256: str | None
    source: Literal["hub", "folder", "single_file"]
    placement: Placement
    tiny_vae: Any | None = None
    tiny_vae_id: str | None = None
    warnings: list[str] = field(default_factory=list)  # about the fast preset's tiny autoencoder
    dtype_warnings: list[str] = field(default_factory=list)  # about the dtype on this device: every image
    cpu_optimizations: list[str] = field(default_factory=list)  # applied at load: see Engine._load_locked
    winograd_vae_pending: bool = False  # the full VAE takes Winograd on its first use (fast never needs it)
    # The full VAE, left on disk while the tiny autoencoder decodes (read_unread_vae reads it).
    unread_vae: UnreadComponent | None = None
    cpu_plan: CpuPlan | None = None  # the CPU optimizations as they ran (the full VAE takes its share when read)


def is_local_path(model_id: str) -> bool:
    """A model id names a local path when it exists, looks like one, or is not shaped like a hub id."""
    if Path(model_id).expanduser().exists():
        return True
    if model_id.startswith(("/", "./", "../", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", model_id):
        return True
    if Path(model_id).suffix.lower() in _WEIGHT_SUFFIXES | _PICKLE_SUFFIXES:
        return True
    return not _HUB_ID.match(model_id)


def load_model(
    settings: ModelSettings,
    placement: Placement,
    *,
    on_download: Callable[[DownloadProgress], None] | None = None,
) -> LoadedModel:
    """Load the model the settings name, or raise an error that says how to get or point to one.
    on_download hears a hub model's download progress when it is not cached yet (see download.py)."""
    model_id = settings.model_id.strip()
    if not model_id:
        raise ModelNotAvailableError("No model is configured. " + _POINT_AT_MODEL)
    # On the CPU the full VAE stays on disk while the tiny autoencoder decodes (the fast preset), so its
    # weights take no memory in a process that never uses them (sd-turbo's: 0.16 GiB in float16).
    defer_vae = placement.device == "cpu" and bool((settings.tiny_autoencoder_id or "").strip())
    if is_local_path(model_id):
        path = Path(model_id).expanduser()
        if not path.exists():
            raise ModelNotAvailableError(f"Model path {path} does not exist. " + _POINT_AT_MODEL)
        if path.is_file():
            loaded = _load_single_file(path, settings, placement)
        else:
            loaded = _load_folder(path, settings, placement, model_id=str(path), source="folder", defer_vae=defer_vae)
    else:
        folder = _download_from_hub(model_id, settings, placement, on_download)
        loaded = _load_folder(folder, settings, placement, model_id=model_id, source="hub", defer_vae=defer_vae)
    loaded.tiny_vae = _load_tiny_autoencoder(settings, loaded, on_download)
    return loaded


def download_model(
    settings: ModelSettings, on_download: Callable[[DownloadProgress], None] | None = None
) -> list[Path]:
    """Fetch the configured hub model, and the fast preset's tiny autoencoder when that is a hub id,
    into the Hugging Face cache without loading them (`python -m studio model download`): the files
    the first generation would fetch, with the same progress. Returns the cached snapshot folders
    (none for local models); raises ModelNotAvailableError with the fix, as load_model does."""
    model_id = settings.model_id.strip()
    if not model_id:
        raise ModelNotAvailableError("No model is configured. " + _POINT_AT_MODEL)
    folders: list[Path] = []
    family: Family | None = None
    if not is_local_path(model_id):
        placement = resolve_placement(settings.device, settings.dtype)
        folders.append(_download_from_hub(model_id, settings, placement, on_download))
        family = _family_of(str(_read_model_index(folders[0]).get("_class_name", "")), model_id)
    tiny_id = (settings.tiny_autoencoder_id or "").strip()
    if family == "sdxl":
        tiny_id = _TINY_FOR_SDXL.get(tiny_id, tiny_id)
    if tiny_id and not is_local_path(tiny_id):
        try:
            folders.append(
                fetch_model(tiny_id, endpoint=settings.hub_endpoint, cache_dir=hub_cache_dir(), on_progress=on_download)
            )
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(
                f"The tiny autoencoder {tiny_id!r} (the fast preset's decoder) could not be downloaded: "
                f"{_first_line(exc)}. Run it again while online, or set STUDIO_MODEL__TINY_AUTOENCODER_ID to a "
                "local AutoencoderTiny folder (empty: always decode with the full VAE)."
            ) from exc
    return folders


# ---------------------------------------------------------------------------------------------------
# Hub


def _download_from_hub(
    model_id: str,
    settings: ModelSettings,
    placement: Placement,
    on_download: Callable[[DownloadProgress], None] | None = None,
) -> Path:
    """The cached snapshot folder of a hub model, fetched first when online (half-precision files if any)."""
    variant = "fp16" if placement.half_precision_files else None
    attempts = [variant, None] if variant else [None]
    last: Exception | None = None
    for attempt in attempts:
        try:
            return fetch_pipeline(
                model_id,
                revision=settings.revision,
                variant=attempt,
                endpoint=settings.hub_endpoint,
                cache_dir=hub_cache_dir(),
                on_progress=on_download,
            )
        except DownloadInterruptedError as exc:
            # Started and stopped: another variant would be another download. The fix is to go on.
            raise ModelNotAvailableError(f"Model {model_id!r} is not available yet: {exc}") from exc
        except (OSError, ValueError) as exc:  # huggingface_hub's errors derive from OSError
            last = exc
    offline = _hub_offline()
    if offline:
        reason = f"it is not in the local Hugging Face cache ({_hub_cache()}) and the hub is off (HF_HUB_OFFLINE)"
    else:
        reason = "it could not be fetched from the Hugging Face hub (no internet connection, or a wrong id?)"
    detail = " ".join(str(last).split())
    detail = detail if len(detail) <= 200 else detail[:199] + "…"
    # The fix first; the hub's own words (which talk about its API) last and short.
    said = "" if offline else f" (Hub said: {detail})"  # offline, the reason above is the whole story
    raise ModelNotAvailableError(
        f"Model {model_id!r} is not available here: {reason}. {ways_to_get_a_model(model_id)}{said}"
    ) from last


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _hub_cache() -> str:
    return str(hub_cache_dir())


def ways_to_get_a_model(model_id: str) -> str:
    """The three ways to get a model onto this machine, as one paragraph."""
    hub_id = model_id if not is_local_path(model_id) else "stabilityai/sd-turbo"
    return (
        f"Get one in one of three ways: (1) run the studio once while online: {hub_id} is downloaded and "
        f"cached; (2) on a connected machine run `hf download {hub_id}` and copy its Hugging Face cache "
        f"folder to {_hub_cache()} here; (3) point STUDIO_MODEL__MODEL_ID at a model you already have: a "
        "local diffusers folder (the one holding model_index.json) or a single .safetensors checkpoint file."
    )


def model_availability(settings: ModelSettings) -> tuple[Literal["ready", "download", "missing"], str]:
    """Whether the configured model can load, found without loading it (fast, no network): "ready",
    "download" (a hub model not cached yet, fetched on first use while online) or "missing", and a
    sentence for the artist that leads with the fix."""
    model_id = settings.model_id.strip()
    if not model_id:
        return "missing", "No model is configured. " + ways_to_get_a_model(model_id)
    if is_local_path(model_id):
        path = Path(model_id).expanduser()
        if path.is_file() or (path / "model_index.json").is_file():
            return "ready", f"Model {path.name} is on this machine."
        what = "does not exist" if not path.exists() else "is not a diffusers model folder (no model_index.json)"
        return "missing", f"Model path {path} {what}. " + ways_to_get_a_model(model_id)
    cached = cached_snapshot(model_id, revision=settings.revision, cache_dir=hub_cache_dir())
    if cached.complete:
        return "ready", f"Model {model_id} is in the local Hugging Face cache."
    partly = "only partly on this machine (an interrupted download)" if cached.started else "not on this machine"
    if _hub_offline():
        return "missing", (
            f"Model {model_id} is {partly} and the hub is switched off (HF_HUB_OFFLINE). "
            + ways_to_get_a_model(model_id)
        )
    rest = "the rest of it" if cached.started else "it"
    hub = settings.hub_endpoint or "the Hugging Face hub"
    return "download", (
        f"Model {model_id} is {partly}{' yet' if not cached.started else ''}: the first generation downloads "
        f"{rest} from {hub} (several GB, once, with its progress shown; then it is cached)."
    )


# ---------------------------------------------------------------------------------------------------
# Diffusers folders


def _read_model_index(folder: Path) -> dict[str, Any]:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        singles = sorted(p.name for p in folder.glob("*.safetensors"))
        hint = f" It holds {', '.join(singles)}: point model_id at that file instead." if singles else ""
        raise ModelNotAvailableError(
            f"{folder} is not a diffusers model folder (no model_index.json).{hint} " + _POINT_AT_MODEL
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"{index_path} is not valid JSON ({exc}): the model folder is damaged. Download or save it again."
        ) from exc
    if not isinstance(index, dict):
        raise CorruptModelError(f"{index_path} does not hold a JSON object: download or save the model again.")
    return index


def _family_of(class_name: str, where: str) -> Family:
    family = _FAMILY_OF_CLASS.get(class_name)
    if family is None:
        raise UnsupportedCheckpointError(
            f"{where} is a {class_name or 'unnamed pipeline'} model; this studio runs the Stable Diffusion "
            "family only (SD 1.x, 2.x, SD-Turbo, SDXL, SDXL-Turbo). Choose such a model in model_id."
        )
    return family


def _has_variant(folder: Path, component: str, variant: str) -> bool:
    sub = folder / component
    return sub.is_dir() and any(f".{variant}." in p.name for p in sub.iterdir() if p.suffix in _WEIGHT_SUFFIXES)


def _weight_files(folder: Path, index: dict[str, Any], variant: str | None) -> list[Path]:
    """The weight files from_pretrained reads for these components and this variant."""
    files: list[Path] = []
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = folder / component
        if not sub.is_dir():
            continue
        candidates = [p for p in sub.iterdir() if p.suffix in _WEIGHT_SUFFIXES]
        chosen = [p for p in candidates if variant and f".{variant}." in p.name]
        if not chosen:
            chosen = [p for p in candidates if not re.search(r"\.(fp16|bf16|fp32)\.", p.name)]
        safes = [p for p in chosen if p.suffix == ".safetensors"]
        files.extend(safes or chosen)
    return sorted(files)


def sha256_of_files(files: list[Path], root: Path) -> str:
    """One digest naming exactly these weights: sha256 over each file's relative path and sha256."""
    outer = hashlib.sha256()
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(8 * 1024 * 1024):
                inner.update(chunk)
        outer.update(f"{path.relative_to(root).as_posix()}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def _safety_kwargs(family: Family, index: dict[str, Any], settings: ModelSettings) -> dict[str, Any]:
    """Keep the model's own safety checker when it ships one and settings allow it; otherwise none."""
    if family != "sd":
        return {}  # SDXL pipelines have no safety checker component
    ships_one = isinstance(index.get("safety_checker"), list) and index["safety_checker"][0] is not None
    if ships_one and settings.safety_checker:
        return {}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


_SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The tensor table of a .safetensors file and where its data starts (the format: an 8-byte
    little-endian header length, the JSON header, then the raw tensor bytes)."""
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


# The weight file of one component in diffusers' folder layout, by the library that defines it.
_WEIGHT_FILE_STEMS = {"diffusers": "diffusion_pytorch_model", "transformers": "model"}
# The components streamed: together nearly all of a pipeline's weights.
_STREAMED_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


@dataclass(frozen=True)
class ComponentFile:
    """One component's safetensors file as the loader found it: its tensor table, and its size and
    modification time, so a component read later can tell that the file changed in between."""

    path: Path
    header: dict[str, Any]
    data_start: int
    stamp: tuple[int, int]  # (st_size, st_mtime_ns)


@dataclass(frozen=True)
class UnreadComponent:
    """A component built without its weights (on PyTorch's meta device), read on its first use by
    read_unread_vae: the full VAE when the fast preset's tiny autoencoder decodes instead."""

    name: str
    file: ComponentFile
    dtype: torch.dtype


def _empty_component(
    folder: Path, component: str, index: dict[str, Any], variant: str | None, dtype: torch.dtype
) -> tuple[Any, ComponentFile] | None:
    """The component's model on the meta device (no memory for its weights) and its weight file, or None
    (the caller then uses from_pretrained) for anything but one safetensors file whose tensors are
    exactly the component's, of a diffusers or transformers class that keeps no module in another dtype."""
    from accelerate import init_empty_weights

    subfolder = folder / component
    entry = index.get(component)
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in _WEIGHT_FILE_STEMS):
        return None
    library, class_name = entry
    stem = _WEIGHT_FILE_STEMS[library]
    path = subfolder / (f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors")
    if not path.is_file() or not (subfolder / "config.json").is_file():
        return None
    stat = path.stat()
    header, data_start = _safetensors_header(path)
    if any(info.get("dtype") not in _SAFETENSORS_DTYPES for info in header.values()):
        return None
    model_class = getattr(importlib.import_module(library), str(class_name), None)
    if model_class is None or getattr(model_class, "_keep_in_fp32_modules", None):
        return None
    with init_empty_weights():
        # diffusers' and transformers' models are untyped torch Modules to mypy: handled as Any here.
        model: Any
        if library == "diffusers":
            model = model_class.from_config(model_class.load_config(subfolder))
        else:
            model = model_class(model_class.config_class.from_pretrained(subfolder))
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    if {name: list(info["shape"]) for name, info in header.items()} != expected:
        return None
    model = model.to(dtype)  # (meta tensors: what the weights will be once read)
    # As from_pretrained records them.
    if library == "diffusers":
        model.register_to_config(_name_or_path=folder)
    else:
        model.config.dtype = dtype
    return model.eval(), ComponentFile(path, header, data_start, (stat.st_size, stat.st_mtime_ns))


def _read_weights(model: Any, file: ComponentFile, dtype: torch.dtype) -> bool:
    """Read the file's tensors into the model one at a time, converted to dtype as they go. False when
    the file is shorter than its table says or a weight is left unread."""
    from accelerate.utils import set_module_tensor_to_device

    header = file.header
    with file.path.open("rb") as handle:
        for tensor_name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            handle.seek(file.data_start + start)
            source_dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            if end == start:
                tensor = torch.empty(info["shape"], dtype=source_dtype)
            else:
                # Read straight into the tensor's memory: read() then bytearray() held the bytes twice
                # (0.4 GB for the text encoder's token table).
                raw = torch.empty(end - start, dtype=torch.uint8)
                if handle.readinto(raw.numpy().data) != end - start:
                    return False
                tensor = raw.view(source_dtype).reshape(info["shape"])
            set_module_tensor_to_device(model, tensor_name, "cpu", value=tensor, dtype=dtype)
    return not (any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()))


def _stream_component(
    folder: Path, component: str, index: dict[str, Any], variant: str | None, dtype: torch.dtype
) -> Any | None:
    """One component of a pipeline folder read one tensor at a time with plain file reads, converted as
    it goes, into memory of its own.

    from_pretrained memory-maps the whole file, and its pages count as resident for as long as any
    tensor views them: for sd-turbo's UNet in bf16 that was 3.6 GiB at its peak for 1.7 GiB of
    weights, and in float32 the text encoder's file stayed mapped beside its prepacked copy (1 GiB
    held twice). Streamed, the peak is the weights plus one tensor, and no file stays mapped.
    Returns None (the caller then uses from_pretrained) where _empty_component does, or for a truncated
    file (from_pretrained reports it).
    """
    empty = _empty_component(folder, component, index, variant, dtype)
    if empty is None:
        return None
    model, file = empty
    return model if _read_weights(model, file, dtype) else None


def read_unread_vae(loaded: LoadedModel) -> bool:
    """Read the full VAE's weights if load_model left them on disk; True when it read them now.

    Raises CorruptModelError when its file changed or went away since the model was loaded: the
    weights sha256 and revision recorded for the model's images would no longer name them."""
    unread = loaded.unread_vae
    if unread is None:
        return False
    file = unread.file
    try:
        stat = file.path.stat()
        same = (stat.st_size, stat.st_mtime_ns) == file.stamp and _read_weights(loaded.pipe.vae, file, unread.dtype)
    except OSError:
        same = False
    if not same:
        raise CorruptModelError(
            f"The model's VAE file {file.path} changed or disappeared after the model was loaded (the full VAE "
            "is read on first use: the quality and balanced presets, img2img from pixels). The studio loads the "
            "model again on the next request; if this repeats, download or save the model again."
        )
    loaded.unread_vae = None
    log.info("read the full VAE on its first use")
    return True


def _load_folder(
    folder: Path,
    settings: ModelSettings,
    placement: Placement,
    *,
    model_id: str,
    source: Literal["hub", "folder"],
    defer_vae: bool = False,
) -> LoadedModel:
    """defer_vae (CPU only): build the full VAE without its weights, read on first use (read_unread_vae)."""
    index = _read_model_index(folder)
    family = _family_of(str(index.get("_class_name", "")), str(folder))
    variant = "fp16" if placement.half_precision_files and _has_variant(folder, "unet", "fp16") else None
    txt2img_class = PIPELINES[family][0]
    unread_vae: UnreadComponent | None = None
    try:
        # The big components loaded first, one at a time and streamed, set no peak of their own. With
        # float16 weight storage (memory "low": all of them; "balanced": the text encoders and the VAE)
        # they are converted to float16 tensor by tensor as they are read, never held in float32, and
        # stay so (the engine wraps their layers).
        streamed: dict[str, Any] = {}
        for component in _STREAMED_COMPONENTS:
            dtype = placement.storage_dtype(component)
            if component == "vae" and defer_vae:
                empty = _empty_component(folder, component, index, variant, dtype)
                if empty is not None:
                    streamed[component] = empty[0]
                    unread_vae = UnreadComponent(component, empty[1], dtype)
                    continue
            if (model := _stream_component(folder, component, index, variant, dtype)) is not None:
                streamed[component] = model
        pipe = txt2img_class.from_pretrained(
            folder,
            dtype=placement.dtype,
            variant=variant,
            local_files_only=True,
            **streamed,
            **_safety_kwargs(family, index, settings),
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(
            f"The model in {folder} could not be loaded ({type(exc).__name__}: {_first_line(exc)}). Its files "
            "are incomplete or damaged: download or save the model again, or choose another model."
        ) from exc
    # With float16 weight storage the streamed parts are float16 until the engine wraps their layers:
    # diffusers' to() warns that such a pipeline "cannot run" on the CPU, which is not so here.
    half_stored = placement.weight_dtype is not None or placement.encoder_weight_dtype is not None
    if unread_vae is None:
        # (With the VAE unread everything is on the CPU already, and to() cannot move a meta tensor.)
        pipe = pipe.to(placement.device, silence_dtype_warnings=half_stored)
    revision = None
    weights_sha256 = None
    if source == "hub":
        # The snapshot folder of the HF cache is named by the commit it holds.
        revision = folder.name if folder.parent.name == "snapshots" else settings.revision
    else:
        weights_sha256 = sha256_of_files(_weight_files(folder, index, variant), folder)
    return LoadedModel(
        pipe=pipe,
        family=family,
        model_id=model_id,
        model_revision=revision,
        weights_sha256=weights_sha256,
        source=source,
        placement=placement,
        unread_vae=unread_vae,
    )


# ---------------------------------------------------------------------------------------------------
# Single .safetensors files


def _checkpoint_family(path: Path) -> Family:
    """SD or SDXL from the checkpoint's tensor names; anything else is not a whole SD checkpoint."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise CorruptModelError(
            f"{path} cannot be read as a .safetensors file ({_first_line(exc)}): it is damaged or not a "
            "checkpoint. Download it again."
        ) from exc
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys) and any(
        k.startswith(("cond_stage_model.", "first_stage_model.")) for k in keys
    ):
        return "sd"
    raise UnsupportedCheckpointError(
        f"{path} is not a whole Stable Diffusion checkpoint (no UNet, text encoder and VAE in the usual "
        "layout; it may be a LoRA, an embedding or a lone VAE). Choose a full SD 1.x/2.x/SDXL checkpoint "
        "or a diffusers folder."
    )


def _load_single_file(path: Path, settings: ModelSettings, placement: Placement) -> LoadedModel:
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise UnsupportedCheckpointError(
            f"{path} is a pickle checkpoint ({suffix}); the studio loads only .safetensors files, which cannot "
            "run code when opened. Use the model's .safetensors release or convert it."
        )
    if suffix != ".safetensors":
        raise UnsupportedCheckpointError(f"{path} is not a .safetensors checkpoint. " + _POINT_AT_MODEL)
    family = _checkpoint_family(path)
    txt2img_class = PIPELINES[family][0]
    kwargs: dict[str, Any] = {"dtype": placement.dtype}
    if settings.single_file_config:
        kwargs["config"] = settings.single_file_config
    if family == "sd":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        pipe = txt2img_class.from_single_file(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        if offline and not settings.single_file_config:
            raise ModelNotAvailableError(
                f"{path} needs its model configuration (layer sizes, scheduler, tokenizer), which diffusers "
                "fetches from the hub and the hub is off. Set STUDIO_MODEL__SINGLE_FILE_CONFIG to a local "
                "diffusers folder of the same architecture, or run once while online."
            ) from exc
        raise CorruptModelError(
            f"{path} could not be loaded ({type(exc).__name__}: {_first_line(exc)}). Download it again or "
            "choose another model."
        ) from exc
    except (RuntimeError, KeyError) as exc:
        raise CorruptModelError(
            f"{path} could not be loaded ({type(exc).__name__}: {_first_line(exc)}): its tensors do not match "
            "the architecture. Check single_file_config, or choose another model."
        ) from exc
    pipe = pipe.to(placement.device)
    return LoadedModel(
        pipe=pipe,
        family=family,
        model_id=str(path),
        model_revision=None,
        weights_sha256=sha256_of_files([path], path.parent),
        source="single_file",
        placement=placement,
    )


# ---------------------------------------------------------------------------------------------------
# The tiny autoencoder of the fast preset


def _load_tiny_autoencoder(
    settings: ModelSettings,
    loaded: LoadedModel,
    on_download: Callable[[DownloadProgress], None] | None = None,
) -> Any | None:
    """AutoencoderTiny for the fast preset, or None with a warning saying why and what it costs. A hub
    id is fetched like the model (same endpoint, progress told to on_download)."""
    tiny_id = (settings.tiny_autoencoder_id or "").strip()
    if not tiny_id:
        return None
    if loaded.family == "sdxl":
        tiny_id = _TINY_FOR_SDXL.get(tiny_id, tiny_id)
    try:
        if is_local_path(tiny_id):
            source = Path(tiny_id).expanduser()
        else:
            source = fetch_model(
                tiny_id, endpoint=settings.hub_endpoint, cache_dir=hub_cache_dir(), on_progress=on_download
            )
        tiny = AutoencoderTiny.from_pretrained(str(source), dtype=loaded.placement.dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        loaded.warnings.append(
            f"The tiny autoencoder {tiny_id!r} could not be loaded ({_first_line(exc)}), so the fast preset "
            "decodes with the model's full VAE, which is several times slower on CPU. Run once while online to "
            "cache it, or set STUDIO_MODEL__TINY_AUTOENCODER_ID to a local AutoencoderTiny folder."
        )
        return None
    latent_channels = loaded.pipe.vae.config.latent_channels
    if tiny.config.latent_channels != latent_channels:
        loaded.warnings.append(
            f"The tiny autoencoder {tiny_id!r} has {tiny.config.latent_channels} latent channels but the model "
            f"has {latent_channels}; the fast preset decodes with the full VAE. Set tiny_autoencoder_id to a "
            "matching AutoencoderTiny."
        )
        return None
    loaded.tiny_vae_id = tiny_id
    return tiny.to(loaded.placement.device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
