"""HTTP JSON feed: one value at a path inside a JSON document, with timeouts, retries and a max age.

Header and query secrets (API keys) never appear in the rules file: it names an environment variable
the operator allowed (settings.evolve.feed_secrets) and the value is read from the environment at
fetch time, sent only to the feed's own origin, and never logged or put in the snapshot. Requests go
through evolve/feeds/fetch.py (address checks, one deadline, a size cap); the body is parsed by
metadata.jsonsafe (size and depth checked first). Messages and the snapshot's `source` name the
feed's origin only (scheme://host[:port]): a key in a path or query stays out of them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

from contracts.urls import has_credentials, redact_url
from evolve.errors import (
    FeedConfigError,
    FeedError,
    FeedMalformed,
    FeedRefused,
    FeedStale,
    FeedUnreachable,
    FeedValueInvalid,
)
from evolve.feeds.base import FeedResult, FeedValue, check_number
from evolve.feeds.fetch import (
    DEADLINE_SETTING,
    FetchDeadline,
    FetchError,
    FetchPolicy,
    FetchRefused,
    fetch,
    secret_env_problem,
)
from metadata.errors import BoundedJSONError
from metadata.jsonsafe import load_json_bounded

RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HeaderSpec:
    """A request header or query parameter: a fixed, non-secret value, or `format` filled with an
    environment variable (the value never leaves this process but in the request itself)."""

    name: str
    value: str | None = None
    env: str | None = None
    format: str = "{}"

    def resolve(self, feed: str, allowed_secrets: frozenset[str] = frozenset()) -> str:
        if self.env is None:
            return self.value or ""
        problem = secret_env_problem(self.env, allowed_secrets)
        if problem is not None:
            raise FeedConfigError(feed, f"{self.name}: {problem}")
        secret = os.environ.get(self.env)
        if not secret:
            raise FeedConfigError(
                feed,
                f"{self.name} needs the environment variable {self.env}, which is "
                f"not set: export {self.env}=... in the daemon's environment",
            )
        return self.format.replace("{}", secret)


@dataclass
class HttpJsonFeed:
    """Reads `url`, follows `path` (dot-separated keys and list indexes) to one value."""

    name: str
    url: str
    path: str
    value_type: str = "number"  # number | text | bool
    headers: list[HeaderSpec] = field(default_factory=list)
    params: list[HeaderSpec] = field(default_factory=list)
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    max_age_s: float | None = None
    timestamp_path: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    policy: FetchPolicy = field(default_factory=FetchPolicy)

    @property
    def origin(self) -> str:
        return redact_url(self.url)

    def read(self, now: datetime) -> FeedResult:
        deadline = time.monotonic() + self.policy.deadline_s
        if has_credentials(self.url):
            return FeedConfigError(
                self.name,
                f"the URL of {self.origin} carries a user name or password, which would be published with it: "
                'send them as a header from the environment, Authorization = { env = "...", format = "Basic {}" }',
            )
        try:
            headers = {h.name: h.resolve(self.name, self.policy.allowed_secrets) for h in self.headers}
            params = {p.name: p.resolve(self.name, self.policy.allowed_secrets) for p in self.params}
            document = self._fetch(with_query(self.url, params), headers, deadline)
            value = self._extract(document)
            observed = self._observed_at(document)
        except FeedError as exc:
            return exc
        if self.max_age_s is not None and observed is not None:
            age = (now - observed).total_seconds()
            if age > self.max_age_s:
                return FeedStale(
                    self.name,
                    f"value is {age:.0f} s old, older than max_age_s = {self.max_age_s:g}; the source has stopped "
                    "updating (or raise max_age_s in the rules file)",
                )
        # Redirects across origins are refused, so the value came from this origin.
        return FeedValue(
            feed=self.name, source=self.origin, fetched_at=datetime.now(UTC), value=value, observed_at=observed
        )

    def _fetch(self, url: str, headers: dict[str, str], deadline: float) -> object:
        last_problem = "no attempt made"
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            attempts += 1
            try:
                answer = fetch(url, policy=self.policy, deadline=deadline, timeout_s=self.timeout_s, headers=headers)
            except FetchDeadline:
                raise FeedUnreachable(
                    self.name,
                    f"{self.origin}: no complete answer within the feed deadline of {self.policy.deadline_s:g} s "
                    f"({DEADLINE_SETTING}); the next cycle tries again",
                ) from None
            except FetchRefused as exc:
                raise FeedRefused(self.name, str(exc)) from None
            except FetchError as exc:
                last_problem = str(exc)
                continue
            if answer.status in RETRY_STATUS:
                last_problem = f"HTTP {answer.status}"
                continue
            if answer.status >= 400:
                raise FeedUnreachable(
                    self.name,
                    f"HTTP {answer.status} from {self.origin}: check the URL and the header credentials",
                )
            try:
                return load_json_bounded(
                    answer.body, max_bytes=self.policy.max_body_bytes, what=f"the answer from {self.origin}"
                )
            except BoundedJSONError as exc:
                raise FeedMalformed(self.name, str(exc)) from None
        raise FeedUnreachable(
            self.name, f"{self.origin}: {last_problem} after {attempts} attempts; the next cycle tries again"
        )

    def _extract(self, document: object) -> float | str | bool:
        raw = follow_path(self.name, document, self.path)
        if self.value_type == "text":
            if not isinstance(raw, str):
                raise FeedMalformed(self.name, f"'{self.path}' is {type(raw).__name__}, expected text")
            return raw
        if self.value_type == "bool":
            if not isinstance(raw, bool):
                raise FeedMalformed(self.name, f"'{self.path}' is {type(raw).__name__}, expected true/false")
            return raw
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise FeedMalformed(self.name, f"'{self.path}' is {type(raw).__name__}, expected a number")
        try:
            number = float(raw)
        except ValueError:
            raise FeedMalformed(self.name, f"'{self.path}' is {raw!r}, expected a number") from None
        problem = check_number(self.name, number, minimum=self.minimum, maximum=self.maximum)
        if problem is not None:
            raise problem
        return number

    def _observed_at(self, document: object) -> datetime | None:
        if self.timestamp_path is None:
            return None
        raw = follow_path(self.name, document, self.timestamp_path)
        return parse_timestamp(self.name, raw, self.timestamp_path)


def follow_path(feed: str, document: object, path: str) -> object:
    """`a.b.0.c` -> document["a"]["b"][0]["c"]; a missing step is a FeedMalformed naming it."""
    current = document
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            raise FeedMalformed(
                feed, f"the document has no '{'.'.join(walked)}' (path '{path}'): check the path in the rules file"
            )
    return current


def parse_timestamp(feed: str, raw: object, path: str) -> datetime:
    """Unix seconds (or milliseconds) or an ISO 8601 string; naive times are taken as UTC."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if math.isnan(raw) or math.isinf(raw):
            raise FeedValueInvalid(feed, f"timestamp '{path}' is {raw}")
        seconds = raw / 1000 if raw > 1e11 else raw
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise FeedMalformed(feed, f"timestamp '{path}' is {raw!r}, not ISO 8601 or unix seconds") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise FeedMalformed(feed, f"timestamp '{path}' is {type(raw).__name__}, not ISO 8601 or unix seconds")


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to its query (after the parameters it already has)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
