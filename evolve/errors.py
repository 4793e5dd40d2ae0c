"""The evolution engine's errors. Each message names the problem and what to do about it."""

from __future__ import annotations

from studio.errors import StudioError


class EvolveError(StudioError):
    """Base of every error the evolution engine raises."""


class FeedError(EvolveError):
    """A feed could not give a usable value. Feeds return these (they never crash a cycle)."""

    kind = "feed"

    def __init__(self, feed: str, message: str) -> None:
        super().__init__(f"feed '{feed}': {message}")
        self.feed = feed
        self.detail = message


class FeedUnreachable(FeedError):
    """The source did not answer (connection refused, timeout, 5xx after the retries)."""

    kind = "unreachable"


class FeedMalformed(FeedError):
    """The source answered with something that is not what the rules file says it is."""

    kind = "malformed"


class FeedStale(FeedError):
    """The value is older than the feed's max_age_s."""

    kind = "stale"


class FeedValueInvalid(FeedError):
    """The value is NaN, infinite, or outside the range the rules file allows."""

    kind = "invalid"


class FeedRefused(FeedError):
    """The studio refused to read the source: a forbidden address, a redirect to another origin, an
    answer over the size limit."""

    kind = "refused"


class FeedConfigError(FeedError):
    """A feed is configured in a way that cannot work (e.g. a header secret's variable is unset)."""

    kind = "config"


class CycleBusy(EvolveError):
    """Another live process is running a cycle of the same collection."""


class CycleAborted(EvolveError):
    """A cycle stopped before its end (outage, fee cap, stop request); the journal keeps its place."""
