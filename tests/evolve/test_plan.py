"""Step 2 of the cycle, the plan: pure, so tested without a chain, a database or a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evolve.journal import CycleStatus, OpenStep, StepStatus
from evolve.plan import NOT_RECONCILED, LiveToken, plan_cycle
from studio.records import EvolveCycle
from studio.rules import Rules, load_rules
from tests.fixtures.evolve import weather_rules

FROZEN = {"traits": {"weather": "frozen"}, "variation": None}
MILD = {"traits": {"weather": "mild"}, "variation": None}


@pytest.fixture
def rules(tmp_path: Path) -> Rules:
    path = tmp_path / "weather.toml"
    path.write_text(weather_rules("https://weather.example/now"))
    return load_rules(path)


def snapshot(temperature: float | None) -> dict[str, Any]:
    """A snapshot document as step 1 pins it; None: the feed failed."""
    entry = {"ok": True, "value": temperature} if temperature is not None else {"ok": False, "error": "down"}
    return {"collection": "weather", "taken_at": "2026-12-01T00:00:00Z", "feeds": {"temperature": entry}}


def token(token_id: int, state: dict[str, Any] | None = None, version: int = 0) -> LiveToken:
    return LiveToken(
        pk=100 + token_id,
        token_id=token_id,
        name=f"Token {token_id}",
        description="",
        seed=token_id,
        prompt="a lighthouse",
        current_version=version,
        current_metadata_cid=f"bafkrei-{token_id}-v{version}",
        current_image_cid=f"bafybei-{token_id}-v{version}",
        evolution_state=state,
    )


def open_row(live: LiveToken, step: StepStatus, state: dict[str, Any]) -> OpenStep:
    pinned = step != StepStatus.PLANNED
    return OpenStep(
        id=live.token_id,
        cycle_id=1,
        token_pk=live.pk,
        token_id=live.token_id,
        version=live.current_version + 1,
        step=step,
        state=state,
        previous_metadata_cid=live.current_metadata_cid,
        image_cid="bafybei-next" if pinned else None,
        metadata_cid="bafkrei-next" if pinned else None,
        feed_snapshot_cid="bafkrei-snapshot",
        tx_hash=None,
    )


def test_changes_build_on_the_current_version_and_unchanged_tokens_stay(rules: Rules) -> None:
    fresh, settled = token(1), token(2, FROZEN, version=3)

    plan = plan_cycle(rules, snapshot(-5.0), [fresh, settled], open_steps={})

    assert (plan.considered, plan.unchanged, plan.changed) == (2, 1, [1])
    assert plan.waiting == {}
    assert plan.pending == {}
    assert plan.superseded == []
    (change,) = plan.changes
    assert change.token == fresh
    assert change.step is None
    assert change.decision.state is not None
    assert change.decision.state["traits"] == {"weather": "frozen"}
    assert change.new_step_fields("bafkrei-snapshot") == {
        "token_pk": fresh.pk,
        "token_id": 1,
        "version": 1,
        "state": change.decision.state,
        "previous_metadata_cid": fresh.current_metadata_cid,
        "feed_snapshot_cid": "bafkrei-snapshot",
    }


def test_a_token_changed_on_chain_outside_the_studio_is_left_alone_with_the_reason(rules: Rules) -> None:
    ours, theirs = token(1), token(2)

    plan = plan_cycle(rules, snapshot(-5.0), [ours, theirs], open_steps={}, changed_on_chain={2: "bafkrei-foreign"})

    assert plan.considered == 1  # not even evaluated
    assert [c.token.token_id for c in plan.changes] == [1]
    reason = plan.waiting[2]
    assert "changed on chain outside the studio" in reason
    assert "bafkrei-foreign" in reason
    assert theirs.current_metadata_cid in reason


def test_a_feed_without_a_value_makes_its_tokens_wait_and_their_open_rows_with_them(rules: Rules) -> None:
    live = token(1)
    row = open_row(live, StepStatus.PINNED, FROZEN)

    plan = plan_cycle(rules, snapshot(None), [live], open_steps={live.pk: row})

    assert plan.waiting == {1: "no value yet for weather"}
    assert plan.changes == []
    assert plan.superseded == []


def test_an_open_row_is_continued_while_its_state_holds_and_superseded_when_the_feeds_moved_on(rules: Rules) -> None:
    holds, moved, back = token(1), token(2), token(3, FROZEN)
    holds_row = open_row(holds, StepStatus.PINNED, FROZEN)
    moved_row = open_row(moved, StepStatus.PLANNED, MILD)
    back_row = open_row(back, StepStatus.PINNED, MILD)  # built for "mild"; it is back to its recorded "frozen"

    plan = plan_cycle(
        rules,
        snapshot(-5.0),
        [holds, moved, back],
        open_steps={holds.pk: holds_row, moved.pk: moved_row, back.pk: back_row},
    )

    assert [(c.token.token_id, c.step) for c in plan.changes] == [(1, holds_row), (2, None)]
    assert plan.superseded == [moved_row, back_row]
    assert plan.unchanged == 1


def test_a_row_that_may_be_on_chain_is_left_to_the_roll_forward(rules: Rules) -> None:
    live = token(1)
    row = open_row(live, StepStatus.SENDING, MILD)

    plan = plan_cycle(rules, snapshot(-5.0), [live], open_steps={live.pk: row})

    assert plan.pending == {1: NOT_RECONCILED}
    assert plan.changes == []
    assert plan.superseded == []


def test_statuses_are_stored_as_the_text_the_database_and_reports_hold() -> None:
    # Rows written before the enums, the JSON reports and the unique index over running cycles
    # (studio/records.py, migration 0004) all hold these strings.
    assert [s.value for s in CycleStatus] == ["running", "done", "partial", "failed", "interrupted"]
    assert [s.value for s in StepStatus] == ["planned", "pinned", "sending", "recorded", "superseded"]
    (index,) = EvolveCycle.__table_args__
    assert f"status = '{CycleStatus.RUNNING}'" in str(index.dialect_options["sqlite"]["where"])
