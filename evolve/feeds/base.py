"""What every feed returns: a typed value with its source and fetch time, or a typed error.

A feed never raises out of `read()`: a cycle snapshots every feed and carries on with what it got,
so one broken source costs the traits that depend on it, not the whole cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from evolve.errors import FeedError, FeedValueInvalid

Scalar = float | int | str | bool


@dataclass(frozen=True)
class FeedValue:
    """One reading. `value` is a scalar, or a mapping of named scalars (the clock gives several);
    `per_token` holds values that differ per token id (on-chain activity)."""

    feed: str
    source: str
    fetched_at: datetime
    value: Scalar | dict[str, Scalar] | None = None
    observed_at: datetime | None = None
    per_token: dict[int, dict[str, Scalar | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": True,
            "source": self.source,
            "fetched_at": iso(self.fetched_at),
            "observed_at": iso(self.observed_at) if self.observed_at else None,
            "value": self.value,
        }
        if self.per_token:
            data["per_token"] = {str(k): v for k, v in sorted(self.per_token.items())}
        return data


FeedResult = FeedValue | FeedError


class Feed(Protocol):
    """A source of values. `read` returns a FeedValue or a FeedError, never raises."""

    name: str

    def read(self, now: datetime) -> FeedResult: ...


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_json(error: FeedError) -> dict[str, Any]:
    return {"ok": False, "kind": error.kind, "error": str(error)}


def check_number(
    feed: str, value: float, *, minimum: float | None = None, maximum: float | None = None
) -> FeedValueInvalid | None:
    """NaN, infinities and values outside the configured range are errors, not readings: a broken
    oracle that says the temperature is 1e300 must not repaint every token."""
    if math.isnan(value) or math.isinf(value):
        return FeedValueInvalid(feed, f"value is {value}: the source sent no usable number; check the source")
    if minimum is not None and value < minimum:
        return FeedValueInvalid(feed, f"value {value} is below the allowed minimum {minimum} (rules file: min)")
    if maximum is not None and value > maximum:
        return FeedValueInvalid(feed, f"value {value} is above the allowed maximum {maximum} (rules file: max)")
    return None
