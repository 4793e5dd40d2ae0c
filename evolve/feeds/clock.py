"""Clock and calendar: time of day, day of week and season in a configured timezone.

Read once per cycle from the cycle's own clock, so every token of a cycle sees the same moment and a
rerun of the evaluation with the same snapshot gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from evolve.errors import FeedConfigError
from evolve.feeds.base import FeedResult, FeedValue, Scalar

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Meteorological seasons (whole months), the convention weather services use.
NORTHERN_SEASONS = {
    12: "winter", 1: "winter", 2: "winter",
    3: "spring", 4: "spring", 5: "spring",
    6: "summer", 7: "summer", 8: "summer",
    9: "autumn", 10: "autumn", 11: "autumn",
}  # fmt: skip
OPPOSITE = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}


def part_of_day(hour: int) -> str:
    if hour < 6:
        return "night"
    if hour < 12:
        return "morning"
    if hour < 18:
        return "afternoon"
    return "evening"


def season(month: int, hemisphere: str) -> str:
    northern = NORTHERN_SEASONS[month]
    return northern if hemisphere == "north" else OPPOSITE[northern]


def load_zone(feed: str, timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise FeedConfigError(
            feed, f"unknown timezone '{timezone}': use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


@dataclass
class ClockFeed:
    """Fields: hour, minute, part_of_day, weekday, is_weekend, day, month, year, season, date."""

    name: str
    timezone: str = "UTC"
    hemisphere: str = "north"

    def read(self, now: datetime) -> FeedResult:
        try:
            zone = load_zone(self.name, self.timezone)
        except FeedConfigError as exc:
            return exc
        local = now.astimezone(zone)
        value: dict[str, Scalar] = {
            "hour": local.hour,
            "minute": local.minute,
            "part_of_day": part_of_day(local.hour),
            "weekday": WEEKDAYS[local.weekday()],
            "is_weekend": local.weekday() >= 5,
            "day": local.day,
            "month": local.month,
            "year": local.year,
            "season": season(local.month, self.hemisphere),
            "date": local.date().isoformat(),
        }
        return FeedValue(feed=self.name, source=f"clock:{self.timezone}", fetched_at=now, value=value, observed_at=now)
