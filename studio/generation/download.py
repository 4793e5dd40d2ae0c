"""Fetching a hub model into the Hugging Face cache with byte progress for the whole snapshot.

diffusers' DiffusionPipeline.download chooses the right files (model_index.json's folders, safetensors
over pickles, the fp16 variant when asked) but gives snapshot_download no progress callback. Here the
same choice is made with diffusers' own helpers, the sizes come from the hub's file listing before the
first byte, and each file is fetched with hf_hub_download into the usual cache layout
(models--owner--name/snapshots/<commit>/...), so everything that reads the cache finds it as before.

Progress goes to a callback, at most every `min_interval_s` and once at the end: bytes done of the
total, the rate over this run and the time left. Files already cached count as done and are not
fetched again, so a retry after an interrupted download resumes at the first missing file (and while
its call lasts huggingface_hub retries a connection cut mid-file, resuming with an HTTP Range request
once it has received more than its 10 MB read chunk).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.generation.errors import DownloadInterruptedError

log = logging.getLogger(__name__)

MAX_FILES = 5000  # a hub listing is outside input: a diffusers repo has a few dozen files
MAX_INDEX_BYTES = 1 << 20  # model_index.json is a few hundred bytes
HUB_TIMEOUT_S = 30.0  # for the listing; file transfers use huggingface_hub's own read timeout
LOG_INTERVAL_S = 5.0  # progress lines in the log (the UI hears every update the callback gets)


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands. rate is bytes per second over this run (None before the first bytes);
    eta_s the seconds left at that rate (None while unknown)."""

    repo_id: str
    done_bytes: int
    total_bytes: int
    rate: float | None
    eta_s: float | None
    file: str | None
    files_done: int
    files_total: int
    finished: bool = False

    def details(self) -> dict[str, Any]:
        """As a stage's details (see engine.StageCallback)."""
        return {
            "model": self.repo_id,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "rate": self.rate,
            "eta_s": self.eta_s,
            "file": self.file,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "finished": self.finished,
            "summary": self.sentence(),
        }

    def sentence(self) -> str:
        """'1.2 GB of 5.1 GB, 24 MB/s, about 3 min left', for the log, the CLI and the UI."""
        parts = [f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}"]
        if self.rate:
            parts.append(f"{human_bytes(self.rate)}/s")
        if self.finished:
            parts.append("done")
        elif self.eta_s is not None:
            parts.append(f"about {human_duration(self.eta_s)} left")
        return ", ".join(parts)


DownloadCallback = Callable[[DownloadProgress], None]


def human_bytes(count: float) -> str:
    """Decimal units, as download sizes are usually quoted: 5.1 GB, 24 MB, 512 kB."""
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.0f} GB" if value >= 10 else f"{value:.1f} GB"


def human_duration(seconds: float) -> str:
    """'12 s', '3 min', '1 h 5 min'."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def hub_cache_dir() -> Path:
    """The Hugging Face cache, read from the environment now (huggingface_hub reads it at import)."""
    return Path(
        os.environ.get("HF_HUB_CACHE")
        or os.path.join(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CachedSnapshot:
    """What the cache holds of a repo's revision: nothing, a started download, or a whole pipeline."""

    folder: Path | None
    started: bool
    complete: bool


def cached_snapshot(repo_id: str, *, revision: str | None, cache_dir: Path | None = None) -> CachedSnapshot:
    """Looked up without the network: a pipeline counts as complete when every component of its
    model_index.json has its folder, and every model folder (one with config.json) its weights. A
    download stopped half-way leaves model_index.json and some folders: started, not complete."""
    from huggingface_hub import try_to_load_from_cache

    index_path = try_to_load_from_cache(
        repo_id, "model_index.json", cache_dir=cache_dir or hub_cache_dir(), revision=revision
    )
    if not isinstance(index_path, str):
        return CachedSnapshot(None, started=False, complete=False)
    folder = Path(index_path).parent
    try:
        index = json.loads(Path(index_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CachedSnapshot(folder, started=True, complete=False)
    if not isinstance(index, dict):
        return CachedSnapshot(folder, started=True, complete=False)
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        sub = folder / component
        names = [p.name for p in sub.iterdir()] if sub.is_dir() else []
        has_weights = any(name.endswith((".safetensors", ".bin")) for name in names)
        if not names or ("config.json" in names and not has_weights):
            return CachedSnapshot(folder, started=True, complete=False)
    return CachedSnapshot(folder, started=True, complete=True)


# ---------------------------------------------------------------------------------------------------
# Which files


def pipeline_files(filenames: Collection[str], model_index: dict[str, Any], variant: str | None) -> list[str]:
    """The files of a diffusers pipeline repo that DiffusionPipeline.download fetches for `variant`
    (its defaults: safetensors when every model folder has them, no ONNX, no custom code), found with
    diffusers' own helpers. Raises ValueError when the variant has no weights, as diffusers does."""
    import diffusers

    # Two of these helpers are private to diffusers (pinned in requirements.in): the test
    # test_the_files_chosen_are_the_ones_diffusers_downloads runs DiffusionPipeline.download itself
    # against the hub stand-in and fails if the choice ever drifts from it.
    from diffusers.pipelines.pipeline_loading_utils import (
        _get_custom_components_and_folders,
        _get_ignore_patterns,
        filter_model_files,
        variant_compatible_siblings,
    )
    from diffusers.schedulers.scheduling_utils import SCHEDULER_CONFIG_NAME
    from diffusers.utils.constants import CONFIG_NAME, TRANSFORMERS_COMPONENT_AUX_FILES
    from huggingface_hub.utils._paths import filter_repo_objects

    index = dict(model_index)
    names = set(filenames) - set(index.pop("_ignore_files", None) or [])
    _custom, folder_names = _get_custom_components_and_folders("the model", index, sorted(names), None, variant)
    class_name = index.get("_class_name")
    pipeline_class = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    is_onnx = bool(getattr(pipeline_class, "_is_onnx", False))
    model_folders = {os.path.split(f)[0] for f in filter_model_files(names) if os.path.split(f)[0] in folder_names}
    # diffusers' defaults: use_safetensors=None (safetensors preferred, pickles allowed), use_onnx=None (the
    # pipeline class's own choice), no flashpack.
    ignore = _get_ignore_patterns(
        [], sorted(model_folders), sorted(names), True, True, is_onnx, is_onnx, False, variant
    )
    # (annotated as returning a list or a str; it returns the pair of sets)
    siblings: tuple[set[str], set[str]] = variant_compatible_siblings(  # type: ignore[assignment]
        sorted(names), variant=variant, ignore_patterns=ignore
    )
    model_files = siblings[0]
    allow = [
        *model_files,
        *(f"{folder}/*" for folder in folder_names if folder not in model_folders),
        *(f"{folder}/config.json" for folder in model_folders),
        SCHEDULER_CONFIG_NAME,
        CONFIG_NAME,
        "model_index.json",
        "pipeline.py",
        *TRANSFORMERS_COMPONENT_AUX_FILES,
    ]
    ignore = [*ignore, *(f"{pattern}.index.*json" for pattern in ignore)]
    return sorted(filter_repo_objects(sorted(names), allow_patterns=allow, ignore_patterns=ignore))


def _safe_repo_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and "\\" not in path and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True)
class DownloadPlan:
    """The files to fetch for one commit of a repo, with their sizes from the hub's listing."""

    repo_id: str
    commit: str
    snapshot: Path
    sizes: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def model_files(filenames: Collection[str]) -> list[str]:
    """The files ModelMixin.from_pretrained reads from a single-model repo (an AutoencoderTiny such as
    madebyollin/taesd): config.json and the safetensors weights, or the pickle ones when there are none."""
    names = set(filenames)
    for weights in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if weights in names:
            return sorted({"config.json", weights} & names)
    raise ValueError("the repo has no diffusion_pytorch_model weights: it is not a diffusers model")


def plan_download(
    repo_id: str,
    *,
    revision: str | None,
    variant: str | None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    pipeline: bool = True,
) -> DownloadPlan:
    """Resolve `revision` to a commit (recording the branch in the cache, as snapshot_download does),
    read the config (model_index.json of a pipeline, config.json of one model) and the repo's file
    listing with sizes, and choose the files."""
    from huggingface_hub import HfApi, hf_hub_download

    cache = cache_dir or hub_cache_dir()
    config_name = "model_index.json" if pipeline else "config.json"
    # Fetching the config by branch name records refs/<branch> -> commit in the cache, so a later
    # offline start finds the snapshot; its folder is named by the commit it belongs to.
    config_path = Path(hf_hub_download(repo_id, config_name, revision=revision, cache_dir=cache, endpoint=endpoint))
    commit = config_path.parent.name
    info = HfApi(endpoint=endpoint).model_info(repo_id, revision=commit, files_metadata=True, timeout=HUB_TIMEOUT_S)
    siblings = list(info.siblings or [])
    if len(siblings) > MAX_FILES:
        raise ValueError(f"{repo_id} lists {len(siblings)} files (more than {MAX_FILES}): not a diffusers model.")
    listed = {s.rfilename: int(s.size or 0) for s in siblings if _safe_repo_path(s.rfilename)}
    chosen = pipeline_files(listed, _read_index(repo_id, config_path), variant) if pipeline else model_files(listed)
    return DownloadPlan(
        repo_id=repo_id, commit=commit, snapshot=config_path.parent, sizes={name: listed[name] for name in chosen}
    )


def _read_index(repo_id: str, path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise ValueError(f"{repo_id}'s model_index.json is larger than {MAX_INDEX_BYTES} bytes: not a diffusers model.")
    try:
        model_index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{repo_id}'s model_index.json is not valid JSON ({exc}).") from exc
    if not isinstance(model_index, dict):
        raise ValueError(f"{repo_id}'s model_index.json does not hold a JSON object.")
    return model_index


# ---------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Adds up the bytes of every file and tells the callback, throttled, from any thread."""

    def __init__(self, plan: DownloadPlan, on_progress: DownloadCallback | None, min_interval_s: float) -> None:
        self.plan = plan
        self.on_progress = on_progress
        self.min_interval_s = min_interval_s
        self.lock = threading.Lock()
        self.done = 0  # bytes on disk for this plan, cached files included
        self.fetched = 0  # bytes received in this run (the rate's numerator)
        self.files_done = 0
        self.file: str | None = None
        self.started = time.monotonic()
        self.last_told = float("-inf")
        self.last_logged = time.monotonic()

    def snapshot(self, finished: bool = False) -> DownloadProgress:
        elapsed = time.monotonic() - self.started
        rate = self.fetched / elapsed if self.fetched > 0 and elapsed > 0 else None
        left = max(0, self.plan.total_bytes - self.done)
        eta = 0.0 if finished or left == 0 else (left / rate if rate else None)
        return DownloadProgress(
            repo_id=self.plan.repo_id,
            done_bytes=min(self.done, self.plan.total_bytes),
            total_bytes=self.plan.total_bytes,
            rate=rate,
            eta_s=eta,
            file=self.file,
            files_done=self.files_done,
            files_total=len(self.plan.sizes),
            finished=finished,
        )

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count
            self.fetched += count
            self._tell()

    def file_started(self, name: str) -> None:
        with self.lock:
            self.file = name
            self._tell(force=self.files_done == 0 and self.fetched == 0)

    def file_finished(self, name: str, on_disk_before: int) -> None:
        with self.lock:
            # The file's bytes as the listing says, whatever the bar saw (a cached blob shows none).
            self.done = on_disk_before + self.plan.sizes[name]
            self.files_done += 1
            self._tell()

    def finish(self) -> None:
        with self.lock:
            self.file = None
            self.done = self.plan.total_bytes
            final = self.snapshot(finished=True)
        log.info("downloaded %s: %s", self.plan.repo_id, final.sentence())
        if self.on_progress is not None:
            self.on_progress(final)

    def _tell(self, force: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_logged >= LOG_INTERVAL_S:
            self.last_logged = now
            log.info("downloading %s: %s", self.plan.repo_id, self.snapshot().sentence())
        if self.on_progress is None or (not force and now - self.last_told < self.min_interval_s):
            return
        self.last_told = now
        self.on_progress(self.snapshot())


def _bar_class(progress: _Progress) -> type[Any]:
    """A tqdm class for hf_hub_download that shows nothing and counts the bytes into `progress`."""
    from tqdm import tqdm

    class _CountingBar(tqdm):  # type: ignore[misc]  # tqdm is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            progress.add(int(n or 0))
            return None

        def update_transfer(self, n: float | None = 1) -> None:
            """Bytes off the network, which huggingface_hub reports beside the bytes written (update):
            for Xet downloads they differ (deduplication, compression) and would count twice. Having
            this method makes its Xet reporter send both to this one bar, as snapshot_download's does."""

        def set_transfer_postfix_str(self, postfix: str, refresh: bool = False) -> None:
            """The network rate, for a display this bar does not have."""

    return _CountingBar


# ---------------------------------------------------------------------------------------------------
# Fetching


def fetch_pipeline(
    repo_id: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    on_progress: DownloadCallback | None = None,
    min_interval_s: float = 0.25,
) -> Path:
    """The cached snapshot folder of a diffusers pipeline on the hub, fetching what is missing with
    progress. Offline (HF_HUB_OFFLINE) or with the hub out of reach it is the cache's answer, as
    DiffusionPipeline.download gives it. Raises OSError/ValueError like DiffusionPipeline.download when
    the model cannot be had, and DownloadInterruptedError when a started download stops."""
    import httpx2
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import OfflineModeIsEnabled

    cache = cache_dir or hub_cache_dir()
    if hub_offline():
        return Path(DiffusionPipeline.download(repo_id, revision=revision, variant=variant, cache_dir=cache))
    try:
        plan = plan_download(repo_id, revision=revision, variant=variant, endpoint=endpoint, cache_dir=cache)
    except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
        # As diffusers does: no hub, but the cache may hold the model from an earlier run.
        log.warning("could not reach the hub for %s (%s); looking in the local cache", repo_id, exc)
        try:
            return Path(
                DiffusionPipeline.download(
                    repo_id, revision=revision, variant=variant, cache_dir=cache, local_files_only=True
                )
            )
        except (OSError, ValueError):
            raise OSError(f"the hub at {endpoint or 'huggingface.co'} could not be reached ({exc})") from exc
    return _fetch(plan, cache, endpoint, on_progress, min_interval_s)


def fetch_model(
    repo_id: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    on_progress: DownloadCallback | None = None,
    min_interval_s: float = 0.25,
) -> Path:
    """The cached snapshot folder of a single diffusers model on the hub (config.json and its weights,
    see model_files), fetched with progress when missing; offline or with the hub out of reach, the
    cache's. Raises OSError/ValueError when it cannot be had."""
    import httpx2
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import OfflineModeIsEnabled

    cache = cache_dir or hub_cache_dir()

    def cached() -> Path:
        config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache, revision=revision)
        folder = Path(config).parent if isinstance(config, str) else None
        if folder is None or not any(
            (folder / name).is_file() for name in model_files([p.name for p in folder.iterdir()])
        ):
            raise FileNotFoundError(f"{repo_id} is not in the local Hugging Face cache ({cache})")
        return folder

    if hub_offline():
        return cached()
    try:
        plan = plan_download(
            repo_id, revision=revision, variant=None, endpoint=endpoint, cache_dir=cache, pipeline=False
        )
    except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
        log.warning("could not reach the hub for %s (%s); looking in the local cache", repo_id, exc)
        return cached()
    return _fetch(plan, cache, endpoint, on_progress, min_interval_s)


def _fetch(
    plan: DownloadPlan,
    cache: Path,
    endpoint: str | None,
    on_progress: DownloadCallback | None,
    min_interval_s: float,
) -> Path:
    """Fetch the plan's files that the cache lacks, one after the other, telling on_progress."""
    import httpx2
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo_id = plan.repo_id
    progress = _Progress(plan, on_progress, min_interval_s)
    missing: list[str] = []
    for name, size in plan.sizes.items():
        if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=plan.commit), str):
            progress.done += size
            progress.files_done += 1
        else:
            missing.append(name)
    if not missing:
        return plan.snapshot
    log.info("downloading %s (%s, %d files) into %s", repo_id, human_bytes(plan.total_bytes), len(missing), cache)
    bar = _bar_class(progress)
    for name in missing:
        before = progress.done
        progress.file_started(name)
        try:
            hf_hub_download(repo_id, name, revision=plan.commit, cache_dir=cache, endpoint=endpoint, tqdm_class=bar)
        except (OSError, ValueError, httpx2.HTTPError) as exc:
            stopped = progress.snapshot()
            raise DownloadInterruptedError(
                f"the download of {repo_id} stopped at {human_bytes(before)} of {human_bytes(plan.total_bytes)} "
                f"while fetching {name} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). The files "
                f"already downloaded ({stopped.files_done} of {stopped.files_total}) are kept: generate again "
                "to go on from there."
            ) from exc
        progress.file_finished(name, before)
    progress.finish()
    return plan.snapshot
