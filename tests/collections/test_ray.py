"""Generation on a real Ray cluster started here on 127.0.0.1 (2 CPUs, the tiny model): a collection made
through Ray equals the in-process one, a killed actor is replaced without losing or repeating an edition,
and an unreachable cluster is a clear error at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from metadata.cid import cid_for_bytes
from studio.config import ScaleSettings
from studio.generation import GenerationRequest
from studio.generation.pool import ClusterUnavailableError, RayPool
from studio.records import Draft
from studio.services import collections
from studio.services.studio import Studio
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.ray import free_port, ray_settings

SPEC = """\
name = "tiles"
editions = 12
base_seed = 500
prompt = "a {glaze} tile with a {motif}"
width = 64
height = 64

[traits.glaze.values]
blue = 2
green = 1
ochre = 1

[traits.motif.values]
bird = 1
leaf = 1
star = 1
"""


def in_process_cids(engine, view: collections.CollectionView) -> dict[int, str]:
    """Each edition's image as this process's engine makes it from the edition's prompt and seed."""
    cids = {}
    for edition in view.editions:
        request = GenerationRequest(prompt=edition.prompt, seed=edition.seed, width=64, height=64)
        cids[edition.number] = cid_for_bytes(engine.generate(request).png)
    return cids


@pytest.mark.slow
def test_a_collection_through_ray_equals_the_in_process_one(studio: Studio, ray_cluster, tmp_path) -> None:
    collections.generate_collection(studio, SPEC)
    local = {e.number: e.image_cid for e in collections.get_collection(studio, "tiles").editions}

    with Studio.open(ray_settings(studio.settings, ray_cluster, tmp_path / "ray-data")) as remote:
        assert isinstance(remote.generator, RayPool)
        assert remote.generator.capacity == 2
        result = collections.generate_collection(remote, SPEC)
        assert (result.generated, result.stopped) == (12, False)
        through_ray = {e.number: e.image_cid for e in collections.get_collection(remote, "tiles").editions}
    assert through_ray == local
    assert len(set(local.values())) == 12


@pytest.mark.slow
def test_a_killed_actor_is_replaced_and_nothing_is_lost_or_made_twice(
    studio_settings, engine, ray_cluster, tmp_path
) -> None:
    import ray

    killed = []
    with Studio.open(ray_settings(studio_settings, ray_cluster, tmp_path / "ray-data")) as remote:
        pool = remote.generator
        assert isinstance(pool, RayPool)

        def kill_one(progress: collections.Progress) -> None:
            busy = pool.busy_actors
            if progress.done >= 1 and busy and not killed:
                victim = busy[0]  # mid-request: the edition it is making must be made again elsewhere
                ray.kill(victim, no_restart=True)
                killed.append(victim)

        result = collections.generate_collection(remote, SPEC, on_progress=kill_one)
        assert killed
        assert pool.replaced >= 1
        assert killed[0] not in pool.actors
        assert (result.generated, result.stopped, sorted(result.made)) == (12, False, list(range(1, 13)))
        view = collections.get_collection(remote, "tiles")
        with remote.db.session() as session:
            assert session.scalar(select(func.count()).select_from(Draft)) == 12  # none made twice
        assert {e.number: e.image_cid for e in view.editions} == in_process_cids(engine, view)


def test_an_unreachable_cluster_is_a_clear_error_at_start_up(studio_settings, tmp_path) -> None:
    closed = free_port()
    settings = studio_settings.model_copy(
        update={"scale": ScaleSettings(ray_address=f"ray://127.0.0.1:{closed}", connect_timeout_s=2)}
    )
    started = time.monotonic()
    with Studio.open(settings) as studio, pytest.raises(ClusterUnavailableError) as caught:
        studio.generator  # noqa: B018
    assert time.monotonic() - started < 30
    assert f"Cannot reach the Ray cluster at 127.0.0.1:{closed}" in str(caught.value)
    assert "STUDIO_SCALE__RAY_ADDRESS" in str(caught.value)
    with pytest.raises(ClusterUnavailableError, match="not a cluster address"):
        RayPool(settings.model, ScaleSettings(ray_address="nowhere"))


def test_no_ray_address_means_no_ray(studio_settings) -> None:
    code = (
        "import sys\n"
        "from studio.config import load_settings\n"
        "from studio.generation.pool import open_pool\n"
        "s = load_settings()\n"
        "pool = open_pool(s.model, s.scale)\n"
        "print(type(pool).__name__, 'ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    ).stdout  # fmt: skip
    assert out.strip() == "InProcessPool False"
