"""Where images are generated: this process's engine, or a pool of engines on a Ray cluster.

Services ask a `GenerationPool` for images (`generate(request) -> GenerationResult`, one call per
image, from as many threads as `capacity`) and keep doing everything else themselves: storing drafts,
pinning, journaling, chain sends. So every crash guarantee of the coordinator stands whichever pool
makes the pixels. A `Window` keeps up to `capacity` requests in flight and hands their results back
in the order they were sent (the evolution cycle uses it).

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar
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
        self.most_busy = 0  # the most actors ever working at once (how far callers fanned out)
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
                self.most_busy = max(self.most_busy, len(self._busy))
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


K = TypeVar("K")

# How often a caller waiting in `Window.take` looks again when no report came (a report wakes it at once).
_WINDOW_POLL_S = 1.0


@dataclass(frozen=True)
class Generated(Generic[K]):
    """A request of a `Window` taken back: its result, or the exception its generation raised."""

    key: K
    value: GenerationResult | None
    error: BaseException | None

    def result(self) -> GenerationResult:
        """The generation's result; raises what the generation raised."""
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class Window(Generic[K]):
    """Requests in flight on a pool, at most its `capacity` at once, taken back in the order they were
    sent: the caller does its own side effects with the results in that order, whichever request
    finished first, while the pool makes the next ones.

    Each request runs on a thread of the window's own. What those threads see (the pool's stage
    reports, a request finishing) is queued and handed to the caller's callbacks in the caller's own
    thread, by `take` and `relay`: a callback never runs on a worker thread or beside the caller's code.
    With an `InProcessPool` (capacity 1) one request is sent, taken back, then the next one is sent:
    the events come in the same order as when the pool is called directly."""

    def __init__(
        self,
        pool: GenerationPool,
        *,
        on_stage: Callable[[K, str, dict[str, Any]], None] | None = None,
        on_finished: Callable[[K, BaseException | None], None] | None = None,
        name: str = "generation",
    ) -> None:
        """`on_stage(key, stage, details)`: a request's stage as the pool reports it (StageCallback);
        `on_finished(key, error)`: a request finished, with the exception it raised or None. Each
        request's finish is told once, before it is taken back."""
        self.pool = pool
        self.capacity = max(1, pool.capacity)
        self.on_stage = on_stage
        self.on_finished = on_finished
        self._executor = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix=name)
        self._flights: deque[tuple[K, Future[GenerationResult]]] = deque()
        # (key, stage, details) for a stage report; (key, None, {}) once that request has finished.
        self._reports: queue.Queue[tuple[K, str | None, dict[str, Any]]] = queue.Queue()
        self._finished: list[K] = []  # finished and told, not taken back yet

    @property
    def in_flight(self) -> list[K]:
        """The requests sent and not taken back yet, oldest first."""
        return [key for key, _ in self._flights]

    @property
    def running(self) -> list[K]:
        """The requests sent whose finish has not been told yet (see `relay`), oldest first."""
        return [key for key, _ in self._flights if not any(key is done for done in self._finished)]

    @property
    def full(self) -> bool:
        return len(self._flights) >= self.capacity

    def send(self, key: K, request: GenerationRequest) -> None:
        """Start generating `request` (the window must not be full: take the oldest back first)."""
        if self.full:
            raise RuntimeError("the generation window is full: take a result back before sending another request")

        def on_stage(stage: str, details: dict[str, Any]) -> None:
            self._reports.put((key, stage, dict(details)))

        future = self._executor.submit(self.pool.generate, request, on_stage=on_stage)
        future.add_done_callback(lambda _: self._reports.put((key, None, {})))
        self._flights.append((key, future))

    def relay(self, timeout_s: float = 0.0) -> None:
        """Tell the callbacks what the requests reported so far, waiting up to `timeout_s` for a first
        report when none is queued."""
        try:
            report = self._reports.get(timeout=timeout_s) if timeout_s > 0 else self._reports.get_nowait()
        except queue.Empty:
            return
        while True:
            self._tell(*report)
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                return

    def _tell(self, key: K, stage: str | None, details: dict[str, Any]) -> None:
        if stage is not None:
            if self.on_stage is not None:
                self.on_stage(key, stage, details)
            return
        self._finished.append(key)
        if self.on_finished is not None:
            future = next(f for k, f in self._flights if k is key)
            self.on_finished(key, future.exception())

    def take(self) -> Generated[K]:
        """Wait for the oldest request (telling the callbacks what comes meanwhile) and take it back."""
        if not self._flights:
            raise RuntimeError("nothing is in flight in the generation window")
        key, future = self._flights[0]
        while not any(key is done for done in self._finished):
            # Woken by the next report; the pool bounds each request's time (STUDIO_SCALE__REQUEST_TIMEOUT_S).
            self.relay(timeout_s=_WINDOW_POLL_S)
        self._flights.popleft()
        self._finished = [done for done in self._finished if done is not key]
        error = future.exception()
        return Generated(key, None if error is not None else future.result(), error)

    def close(self) -> None:
        """Wait for what is still in flight (its results are dropped: nothing was done with them)."""
        self._executor.shutdown(wait=True)
        self._flights.clear()

    def __enter__(self) -> Window[K]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_pool(model_settings: ModelSettings, scale: ScaleSettings) -> GenerationPool:
    """The pool the settings ask for: in-process unless a Ray address is set."""
    if not scale.ray_address.strip():
        return InProcessPool(model_settings)
    return RayPool(model_settings, scale)
