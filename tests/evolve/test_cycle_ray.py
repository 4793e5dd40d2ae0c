"""The evolution cycle through a real Ray cluster started here on 127.0.0.1 (2 CPUs, 2 engine actors, the
tiny model; the real anvil, real SQLite, the local IPFS store): its regenerations go out two at a time,
and it makes the same images and versions as the same cycle in this process, even when an actor is killed
in the middle of it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from evolve.cycle import CycleReport, run_cycle
from evolve.journal import CycleStatus, StepStatus
from evolve.progress import CycleProgress, CycleStage
from studio.generation.pool import InProcessPool, RayPool
from studio.records import EvolveStep, Token
from tests.fixtures.evolve import mint_living
from tests.fixtures.ray import ray_settings

pytestmark = pytest.mark.slow

TOKENS = 12

# The clock feed alone: given the cycle's moment, its snapshot (and so every image's provenance) is the same
# whichever pool makes the pixels.
LIGHT_RULES = """\
[schedule]
every = "1h"

[evolution]
prompt = "{prompt}, {light}"
strength = 0.5

[feeds.clock]
type = "clock"

[traits.light]
input = "clock.part_of_day"
[[traits.light.cases]]
equals = "morning"
fragment = "morning light"
[[traits.light.cases]]
fragment = "lamplight"
"""

MORNING = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def unsigned_settings(evolve_settings):
    """Content Credentials off: their ECDSA signature differs at every signing, so a signed image's CID
    differs from run to run whoever made its pixels; unsigned, the CID is the digest of what was made."""
    credentials = evolve_settings.credentials.model_copy(update={"enabled": False})
    return evolve_settings.model_copy(update={"credentials": credentials})


def light_collection(studio, count: int = TOKENS) -> list[int]:
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "light.toml").write_text(LIGHT_RULES)
    return mint_living(studio, count, rules_name="light")


def in_process(studio, now: datetime) -> dict[int, tuple[int, str]]:
    """The cycle at `now` as this process makes it (a dry run: the same steps, nothing sent):
    token -> (version, image CID)."""
    assert isinstance(studio.generator, InProcessPool)
    report = run_cycle(studio, "light", dry_run=True, now=now)
    assert report.status == CycleStatus.DONE, report.errors
    return {c["token_id"]: (c["version"], c["image_cid"]) for c in report.would_change}


def recorded(studio, tokens: list[int]) -> dict[int, tuple[int, str]]:
    """token -> (current version, its image CID) as the studio recorded them."""
    with studio.db.session() as session:
        rows = session.scalars(select(Token).where(Token.token_id.in_(tokens))).all()
        return {t.token_id: (t.current_version, t.current_image_cid) for t in rows}


def assert_each_version_once(studio, tokens: list[int], report: CycleReport) -> None:
    """Chain history, recorded versions and journal agree: v0 then v1, each made and sent once."""
    client = studio.chain.client
    assert report.status == CycleStatus.DONE, report.errors
    assert sorted(report.evolved) == tokens
    assert len(report.transactions) == 1  # one batch for them all
    with studio.db.session() as session:
        for token_id in tokens:
            token = session.scalar(select(Token).where(Token.token_id == token_id))
            history = client.history(token_id)
            assert [(v.version, v.metadata_cid) for v in token.versions] == [
                (h.version, h.metadata_cid) for h in history
            ]
            assert [h.version for h in history] == [0, 1], f"token {token_id}"
            steps = session.scalars(select(EvolveStep).where(EvolveStep.token_id == token_id)).all()
            assert [(s.version, s.step) for s in steps] == [(1, StepStatus.RECORDED)], f"token {token_id}"


def test_a_cycle_of_12_tokens_through_ray_makes_the_same_images_and_versions_as_in_process(
    open_studio, unsigned_settings, ray_cluster
) -> None:
    studio = open_studio(unsigned_settings)
    tokens = light_collection(studio)
    expected = in_process(studio, MORNING)
    assert sorted(expected) == tokens
    assert len({cid for _, cid in expected.values()}) == TOKENS

    remote = open_studio(ray_settings(unsigned_settings, ray_cluster))
    pool = remote.generator
    assert isinstance(pool, RayPool)
    assert pool.capacity == 2
    steps: list[CycleProgress] = []
    report = run_cycle(remote, "light", now=MORNING, on_step=steps.append)

    assert_each_version_once(remote, tokens, report)
    assert recorded(remote, tokens) == expected  # same PNG bytes (the CID is their digest), same versions
    assert pool.most_busy == 2  # two regenerations on the cluster at once, never more
    # The live steps say so, and count what is generated, not what was sent.
    generating = [s for s in steps if s.stage == CycleStage.GENERATING]
    assert any("2 in flight" in s.text for s in generating), [s.text for s in generating]
    generated = [s.done for s in generating if s.text.startswith("Generated ")]
    assert generated == list(range(1, TOKENS + 1))
    assert all(s.total == TOKENS for s in generating)


def test_an_actor_killed_mid_cycle_is_replaced_and_no_version_is_lost_or_made_twice(
    open_studio, unsigned_settings, ray_cluster
) -> None:
    import ray

    studio = open_studio(unsigned_settings)
    tokens = light_collection(studio)
    expected = in_process(studio, MORNING)

    remote = open_studio(ray_settings(unsigned_settings, ray_cluster))
    pool = remote.generator
    assert isinstance(pool, RayPool)
    killed = []

    def kill_one(step: CycleProgress) -> None:
        busy = pool.busy_actors
        if step.stage == CycleStage.GENERATING and step.done >= 1 and busy and not killed:
            victim = busy[0]  # mid-request: the token it is making must be made again on another actor
            ray.kill(victim, no_restart=True)
            killed.append(victim)

    report = run_cycle(remote, "light", now=MORNING, on_step=kill_one)

    assert killed
    assert pool.replaced >= 1
    assert killed[0] not in pool.actors
    assert_each_version_once(remote, tokens, report)
    assert recorded(remote, tokens) == expected


def test_a_stop_keeps_the_images_in_flight_and_the_next_cycle_makes_the_rest(
    open_studio, unsigned_settings, ray_cluster
) -> None:
    studio = open_studio(unsigned_settings)
    tokens = light_collection(studio, 4)
    expected = in_process(studio, MORNING)

    remote = open_studio(ray_settings(unsigned_settings, ray_cluster))
    stop = threading.Event()

    def stop_at_the_first_image(step: CycleProgress) -> None:
        if step.text.startswith("Generated "):
            stop.set()  # tokens 1 and 2 are both on the cluster by then

    first = run_cycle(remote, "light", now=MORNING, stop=stop, on_step=stop_at_the_first_image)

    assert first.status == CycleStatus.PARTIAL
    assert first.evolved == []  # sending stops too
    assert first.pending == {
        **{str(t): "stop requested: sent next cycle" for t in tokens[:2]},
        **{str(t): "stop requested: generated next cycle" for t in tokens[2:]},
    }
    with remote.db.session() as session:
        rows = session.scalars(select(EvolveStep).order_by(EvolveStep.token_id)).all()
        # What was in flight is finished and pinned, not thrown away; the rest is only planned.
        assert [(r.token_id, r.step) for r in rows] == [
            *((t, StepStatus.PINNED) for t in tokens[:2]),
            *((t, StepStatus.PLANNED) for t in tokens[2:]),
        ]

    second = run_cycle(remote, "light", now=MORNING)
    assert_each_version_once(remote, tokens, second)
    assert recorded(remote, tokens) == expected
