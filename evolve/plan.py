"""Step 2 of a cycle: which tokens evolve, and how. Pure: no database, no chain, no network.

`plan_cycle` takes what the cycle has read (the rules, the pinned feed snapshot, the living tokens,
their open journal rows, the tokens changed on chain outside the studio) and returns a `CyclePlan`:
for every token, whether it waits (and why), stays as it is, or changes, and for each change the
journal row it continues, if any. Steps 3-5 of the cycle (evolve/cycle.py) carry the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evolve.journal import OpenStep, StepStatus
from studio.rules import Rules
from studio.rules.evaluation import Decision, TokenInput, evaluate

STATE_MOVED_ON = "the token's state changed again before it was sent"
NOT_RECONCILED = "an earlier transaction is not reconciled yet"


@dataclass(frozen=True)
class LiveToken:
    """A living, unfrozen token of the collection, as the studio recorded it."""

    pk: int
    token_id: int
    name: str
    description: str
    seed: int
    prompt: str
    current_version: int
    current_metadata_cid: str
    current_image_cid: str
    evolution_state: dict[str, Any] | None


@dataclass(frozen=True)
class Change:
    """A token that changes this cycle. `step` is the open journal row carrying this very state (a
    version planned or pinned by an earlier cycle: it is continued, never built twice), or None
    when a new row is to be planned."""

    token: LiveToken
    decision: Decision
    step: OpenStep | None = None

    def new_step_fields(self, snapshot_cid: str) -> dict[str, Any]:
        """The journal row a new version of this token starts as (it builds on the current version)."""
        return {
            "token_pk": self.token.pk,
            "token_id": self.token.token_id,
            "version": self.token.current_version + 1,
            "state": self.decision.state or {},
            "previous_metadata_cid": self.token.current_metadata_cid,
            "feed_snapshot_cid": snapshot_cid,
        }


@dataclass
class CyclePlan:
    """What the cycle will do with each token (token ids; reasons are shown to the user as they are)."""

    considered: int = 0
    unchanged: int = 0
    changed: list[int] = field(default_factory=list)  # decided to change (some may still wait: `pending`)
    waiting: dict[int, str] = field(default_factory=dict)  # left as they are this cycle, and why
    pending: dict[int, str] = field(default_factory=dict)  # changes that cannot go ahead yet, and why
    superseded: list[OpenStep] = field(default_factory=list)  # open rows never sent whose state no longer holds
    changes: list[Change] = field(default_factory=list)  # in token order: regenerate (if not pinned) and send


def plan_cycle(
    rules: Rules,
    snapshot: dict[str, Any],
    tokens: list[LiveToken],
    *,
    open_steps: dict[int, OpenStep],
    changed_on_chain: dict[int, str] | None = None,
) -> CyclePlan:
    """Decide each token's next state under `rules` from the feed `snapshot` (studio/rules/evaluation.py)
    and what the cycle does about it.

    `open_steps` are the tokens' open journal rows by token pk; `changed_on_chain` maps a token id to
    the metadata CID the chain holds where that is not the version the studio recorded (someone else
    evolved it: evolving it from the studio's older version would drop a link from its provenance
    chain, so it is left as it is, not even considered).
    """
    plan = CyclePlan()
    outside = changed_on_chain or {}
    considered = []
    for token in tokens:
        if token.token_id in outside:
            plan.waiting[token.token_id] = (
                f"changed on chain outside the studio (metadata {outside[token.token_id]}, the studio recorded "
                f"{token.current_metadata_cid}): left as it is so its history stays straight"
            )
        else:
            considered.append(token)
    plan.considered = len(considered)

    decisions = [
        evaluate(rules, snapshot, TokenInput(t.token_id, t.seed, t.prompt, t.evolution_state)) for t in considered
    ]
    for token, decision in zip(considered, decisions, strict=True):
        if decision.waiting_on:
            plan.waiting[token.token_id] = "no value yet for " + ", ".join(decision.waiting_on)
        elif decision.changed:
            plan.changed.append(token.token_id)
        else:
            plan.unchanged += 1

    for token, decision in zip(considered, decisions, strict=True):
        step = open_steps.get(token.pk)
        if step is not None and step.step == StepStatus.SENDING:
            # Only the roll-forward may touch it: it asks the chain what that transaction did.
            plan.pending[token.token_id] = NOT_RECONCILED
            continue
        if decision.waiting_on:
            continue  # an open row waits with it
        if step is not None and not (decision.changed and same_state(step.state, decision.state or {})):
            # The feeds moved on (or back) before this version was sent: it was never on chain.
            plan.superseded.append(step)
            step = None
        if decision.changed:
            plan.changes.append(Change(token, decision, step))
    return plan


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two token states pick the same fragments and variation (the prompt and strength follow from them)."""
    return (a.get("traits"), a.get("variation")) == (b.get("traits"), b.get("variation"))
