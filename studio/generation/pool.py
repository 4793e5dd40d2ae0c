"""Where images are generated: this process's engine, or a pool of engines on a Ray cluster.

Services ask a `GenerationPool` for images (`generate(request) -> GenerationResult`, one call per
image, from as many threads as `capacity`) and keep doing everything else themselves: storing drafts,
pinning, journaling, chain sends. So every crash guarantee of the coordinator stands whichever pool
makes the pixels.

- `InProcessPool` (the default, `STUDIO_SCALE__RAY_ADDRESS` empty): the process's one engine; Ray is
  never imported.
- `RayPool`: `actors` Ray actors, each holding one loaded engine (one GPU each on GPU workers, CPUs
  otherwise). A request goes to an idle actor, so at most `capacity` (= actors) requests are in
  flight. An actor lost mid-request (its node died, `ray.kill`) is replaced and the request is sent
  again to another actor; the coordinator only records results, so nothing is lost or made twice,
  and the same seed gives the same image as in-process on the same hardware class.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from studio.config import ModelSettings, ScaleSettings
from studio.generation.engine import Engine, GenerationRequest, GenerationResult, StageCallback, get_engine
from studio.generation.errors import GenerationCancelled, GenerationError

log = logging.getLogger("studio.generation.pool")

ProgressCallback = Callable[[int, int], None]


class ClusterUnavailableError(GenerationError):
    """The Ray cluster named by STUDIO_SCALE__RAY_ADDRESS cannot be reached or cannot hold an engine."""


class GenerationPool(Protocol):
    """What services generate through (see the module docstring)."""

    @property
    def capacity(self) -> int:
        """How many requests may usefully be in flight at once (callers use that many threads)."""
        ...

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_stage: StageCallback | None = None,
    ) -> GenerationResult: ...

    def close(self) -> None: ...


class InProcessPool:
    """This process's engine (weights loaded on first use), one request at a time."""

    def __init__(self, model_settings: ModelSettings) -> None:
        self.model_settings = model_settings

    @property
    def engine(self) -> Engine:
        return get_engine(self.model_settings)

    @property
    def capacity(self) -> int:
        return 1

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_stage: StageCallback | None = None,
    ) -> GenerationResult:
        return self.engine.generate(request, progress=progress, cancel=cancel, on_stage=on_stage)

    def close(self) -> None:
        """Nothing to release: the engine is the process's and outlives the pool."""


class _EngineActor:
    """The body of one Ray actor: one engine, loaded when the actor starts (its weights stay loaded)."""

    def __init__(self, model_settings: ModelSettings, threads: int) -> None:
        import torch

        if threads > 0:
            # The same thread count as the coordinator's: a different count changes the last bits.
            torch.set_num_threads(threads)
        self.engine = Engine(model_settings)
        self.engine.load()

    def ready(self) -> bool:
        return True

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.engine.generate(request)


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, with what to do, when nothing listens at the cluster's address (Ray itself would
    retry for minutes before giving up)."""
    if address in ("local", "auto"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    host, port = parts.hostname, parts.port
    if not host or not port:
        raise ClusterUnavailableError(
            f"STUDIO_SCALE__RAY_ADDRESS={address!r} is not a cluster address: use ray://HEAD:10001 (Ray Client), "
            "HEAD:6379 (the head's GCS port, from a machine of the cluster) or 'local'."
        )
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterUnavailableError(
            f"Cannot reach the Ray cluster at {host}:{port} ({exc}): start its head (`ray start --head "
            f"--port={port}`, see docs/scaling.md) or fix STUDIO_SCALE__RAY_ADDRESS; empty it to generate in this "
            "process."
        ) from None


class RayPool:
    """Engines on a Ray cluster, one per actor (see the module docstring)."""

    def __init__(self, model_settings: ModelSettings, scale: ScaleSettings) -> None:
        check_reachable(scale.ray_address, scale.connect_timeout_s)
        import ray

        self._ray = ray
        self.model_settings = model_settings
        self.scale = scale
        if not ray.is_initialized():
            if scale.ray_address == "local":
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=scale.ray_address, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.use_gpus = gpus > 0 and model_settings.device in ("auto", "cuda")
        if scale.actors:
            count = scale.actors
        elif self.use_gpus:
            count = gpus
        else:
            count = max(1, int(resources.get("CPU", 1) // scale.actor_cpus))
        self._remote_class = ray.remote(_EngineActor)
        self._lock = threading.Lock()
        self._idle: queue.Queue[Any] = queue.Queue()
        self._actors: list[Any] = []
        self._closed = False
        self.replaced = 0  # actors lost and replaced so far
        self._busy: list[Any] = []
        for _ in range(count):
            self._idle.put(self._start_actor())
        self._count = count
        log.info("ray pool: %s engine actors at %s (gpus: %s)", count, scale.ray_address, self.use_gpus)

    @property
    def capacity(self) -> int:
        return self._count

    @property
    def actors(self) -> list[Any]:
        """The live actors (tests kill one to see the pool carry on)."""
        with self._lock:
            return list(self._actors)

    @property
    def busy_actors(self) -> list[Any]:
        """The actors working on a request now."""
        with self._lock:
            return list(self._busy)

    def _start_actor(self) -> Any:
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
        if self.use_gpus:
            options["num_gpus"] = 1
            options["num_cpus"] = self.scale.actor_cpus
        else:
            options["num_cpus"] = self.scale.actor_cpus
        threads = self.scale.actor_threads
        actor = self._remote_class.options(**options).remote(self.model_settings, threads)
        with self._lock:
            self._actors.append(actor)
        return actor

    def _unbusy(self, actor: Any) -> None:
        with self._lock:
            if actor in self._busy:
                self._busy.remove(actor)

    def _replace(self, actor: Any) -> None:
        self._unbusy(actor)
        with self._lock:
            if actor in self._actors:
                self._actors.remove(actor)
            closed = self._closed
        if not closed:
            self.replaced += 1
            self._idle.put(self._start_actor())

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_stage: StageCallback | None = None,
    ) -> GenerationResult:
        """Generate on an idle actor (waiting for one); an actor lost mid-request is replaced and the
        request sent again, up to `max_retries` times. Progress is reported once, at the end; the stages
        are "waiting" (for a free actor) and "generating" (on the cluster)."""
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        attempts = self.scale.max_retries + 1
        for attempt in range(1, attempts + 1):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("The generation was cancelled before it started.")
            if on_stage is not None:
                on_stage("waiting", {"for": "a free Ray engine actor"})
            try:
                actor = self._idle.get(timeout=self.scale.request_timeout_s)
            except queue.Empty:
                raise ClusterUnavailableError(
                    f"No Ray engine actor was free within {self.scale.request_timeout_s:g} s: check the cluster "
                    "(ray status) and its resources."
                ) from None
            with self._lock:
                self._busy.append(actor)
            if on_stage is not None:
                on_stage("generating", {"on": "the Ray cluster"})
            try:
                result: GenerationResult = self._ray.get(
                    actor.generate.remote(request), timeout=self.scale.request_timeout_s
                )
            except RayActorError as exc:
                log.warning("ray pool: an engine actor was lost (attempt %s of %s): %s", attempt, attempts, exc)
                self._replace(actor)
                continue
            except GetTimeoutError:
                self._ray.kill(actor)
                self._replace(actor)
                raise GenerationError(
                    f"A Ray worker took more than {self.scale.request_timeout_s:g} s for one image: it was "
                    "replaced. Check the workers (ray status), or raise STUDIO_SCALE__REQUEST_TIMEOUT_S."
                ) from None
            except RayTaskError as exc:
                self._unbusy(actor)
                self._idle.put(actor)
                cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else None
                if cause is not None:
                    raise cause from None
                raise
            self._unbusy(actor)
            self._idle.put(actor)
            if progress is not None:
                steps = int(result.record.get("steps") or 1)
                progress(steps, steps)
            return result
        raise ClusterUnavailableError(
            f"Ray engine actors were lost {attempts} times in a row for one image: check the cluster (ray status)."
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            actors, self._actors = list(self._actors), []
        for actor in actors:
            with contextlib.suppress(Exception):  # an actor already gone needs no killing
                self._ray.kill(actor)


def open_pool(model_settings: ModelSettings, scale: ScaleSettings) -> GenerationPool:
    """The pool the settings ask for: in-process unless a Ray address is set."""
    if not scale.ray_address.strip():
        return InProcessPool(model_settings)
    return RayPool(model_settings, scale)
