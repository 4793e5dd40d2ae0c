"""The generation window (studio/generation/pool.py) on this process's engine: requests come back in the
order they were sent, what the worker threads see reaches the caller's callbacks in the caller's own
thread, and a bad request fails alone."""

from __future__ import annotations

import threading

import pytest

from studio.generation import GenerationRequest, InvalidRequestError
from studio.generation.pool import InProcessPool, Window


def test_results_and_reports_come_back_in_order_in_the_callers_thread(tiny_model_settings, engine) -> None:
    caller = threading.get_ident()
    seen: list[tuple[str, int, bool]] = []
    requests = {n: GenerationRequest(prompt=f"a harbour at dusk {n}", seed=n, width=64, height=64) for n in (1, 2, 3)}
    requests[2] = GenerationRequest(prompt="a harbour", seed=2, width=65, height=64)  # refused by the engine
    results: dict[int, bytes | BaseException] = {}

    def take(window: Window[int]) -> None:
        back = window.take()
        try:
            results[back.key] = back.result().png
        except InvalidRequestError as exc:
            results[back.key] = exc

    with Window[int](
        InProcessPool(tiny_model_settings),
        on_stage=lambda key, stage, details: seen.append((stage, key, threading.get_ident() == caller)),
        on_finished=lambda key, error: seen.append(
            ("failed" if error else "finished", key, threading.get_ident() == caller)
        ),
    ) as window:
        assert window.capacity == 1  # one engine: one request at a time
        for number, request in requests.items():
            while window.full:
                take(window)
            window.send(number, request)
            assert window.in_flight == [number]
            with pytest.raises(RuntimeError, match="window is full"):
                window.send(99, request)
        while window.in_flight:
            take(window)

    assert all(in_caller for *_, in_caller in seen), seen
    ends = [(what, key) for what, key, _ in seen if what in ("finished", "failed")]
    assert ends == [("finished", 1), ("failed", 2), ("finished", 3)]
    # Each request's stages come before its end, and before anything of the next request.
    assert [key for _, key, _ in seen] == sorted(key for _, key, _ in seen)
    assert any(stage == "denoising" for stage, _, _ in seen)
    assert isinstance(results[2], InvalidRequestError)
    assert "width 65 is not a multiple of 8" in str(results[2])
    for number in (1, 3):
        assert results[number] == engine.generate(requests[number]).png  # the same bytes as called directly
