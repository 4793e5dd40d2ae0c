"""Rules + feed snapshot + token -> the token's next state. Pure and deterministic.

The input is the snapshot document exactly as it is pinned, so anyone holding a version's
`feed_snapshot` CID and the rules file can recompute why the token looks the way it does. A token is
regenerated only when its mapped state (the fragment each trait chose, and its variation) changes.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from studio.rules import Case, Rules

MIN_STRENGTH = 0.05


@dataclass(frozen=True)
class TokenInput:
    """What evaluation needs to know about one token."""

    token_id: int
    seed: int
    prompt: str
    previous_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """The next state of one token. `state` is None when the token must wait (a trait has no value)."""

    token_id: int
    state: dict[str, Any] | None
    changed: bool
    prompt: str | None = None
    negative_prompt: str = ""
    strength: float | None = None
    waiting_on: tuple[str, ...] = ()
    kept: tuple[str, ...] = field(default=())  # traits that kept their earlier fragment (feed unavailable)


def trait_input(snapshot: dict[str, Any], input_name: str, token_id: int) -> tuple[bool, Any]:
    """(available, value) of `feed` or `feed.field` for `token_id` in a snapshot document."""
    feed_name, _, field_name = input_name.partition(".")
    entry = snapshot.get("feeds", {}).get(feed_name)
    if not entry or not entry.get("ok"):
        return False, None
    per_token = entry.get("per_token")
    if per_token is not None and field_name:
        values = per_token.get(str(token_id))
        if values is None or values.get(field_name) is None:
            return False, None
        return True, values[field_name]
    value = entry.get("value")
    if field_name:
        if not isinstance(value, dict) or value.get(field_name) is None:
            return False, None
        return True, value[field_name]
    return value is not None, value


def case_matches(case: Case, value: Any) -> bool:
    if case.numeric:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        return (
            (case.below is None or value < case.below)
            and (case.at_least is None or value >= case.at_least)
            and (case.above is None or value > case.above)
            and (case.at_most is None or value <= case.at_most)
        )
    if case.equals is not None:
        return _same(case.equals, value)
    if case.one_of is not None:
        return any(_same(option, value) for option in case.one_of)
    return True  # a case with no condition is the catch-all


def _same(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return expected is value
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return float(expected) == float(value)
    return str(expected) == str(value)


def _token_hash(token: TokenInput, purpose: str) -> int:
    digest = hashlib.sha256(f"{purpose}:{token.token_id}:{token.seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def compose_prompt(template: str, values: dict[str, str]) -> str:
    """Fill the template; fragments left empty leave no stray commas behind."""
    text = template.format_map(values)
    text = re.sub(r"(\s*,\s*)+", ", ", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ,")


def evaluate(rules: Rules, snapshot: dict[str, Any], token: TokenInput) -> Decision:
    """The next state of `token` under `rules` given the feed values in `snapshot`."""
    previous_traits = (token.previous_state or {}).get("traits", {})
    fragments: dict[str, str] = {}
    strengths: list[float] = []
    waiting: list[str] = []
    kept: list[str] = []
    for name, trait in rules.traits.items():
        available, value = trait_input(snapshot, trait.input, token.token_id)
        if not available:
            if name in previous_traits:
                fragments[name] = previous_traits[name]
                kept.append(name)
            elif trait.default is not None:
                fragments[name] = trait.default
            else:
                waiting.append(name)
            continue
        matched = next((case for case in trait.cases if case_matches(case, value)), None)
        if matched is None:
            fragments[name] = trait.default or ""
            continue
        fragments[name] = matched.fragment
        if matched.strength is not None:
            strengths.append(matched.strength)

    if waiting:
        return Decision(token.token_id, None, False, waiting_on=tuple(waiting), kept=tuple(kept))

    evolution = rules.evolution
    variation = None
    if evolution.variation:
        variation = evolution.variation[_token_hash(token, "variation") % len(evolution.variation)]
    state: dict[str, Any] = {"traits": fragments, "variation": variation}

    strength = max(strengths) if strengths else evolution.strength
    if evolution.strength_variation:
        unit = _token_hash(token, "strength") / 2**64  # [0, 1)
        strength += (2 * unit - 1) * evolution.strength_variation
    strength = round(min(1.0, max(MIN_STRENGTH, strength)), 3)

    prompt = compose_prompt(evolution.prompt, {"prompt": token.prompt, "variation": variation or "", **fragments})
    previous = token.previous_state or {}
    changed = {"traits": previous.get("traits"), "variation": previous.get("variation")} != state
    return Decision(
        token_id=token.token_id,
        state={**state, "prompt": prompt, "strength": strength},
        changed=changed,
        prompt=prompt,
        negative_prompt=evolution.negative_prompt,
        strength=strength,
        kept=tuple(kept),
    )
