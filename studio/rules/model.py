"""A collection's rules file: which feeds it reads, how their values map to each token's next state,
and when its cycle runs. One TOML file per collection (where it lives: studio.rules.folder).

The file is validated whole on load; every mistake is reported as `file:line: field: problem and fix`,
so an operator sees exactly which line to change. See README.md ("Evolution") for the format.
"""

from __future__ import annotations

import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.urls import has_credentials
from studio.rules.errors import RulesError

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_-]*$"
SECRET_NAME = re.compile(
    r"^(authorization|proxy-authorization|cookie|key|appid|app_id|sig)$|api[-_]?key|access[-_]?key|token|secret"
    r"|passw|signature|session|credential",
    re.IGNORECASE,
)
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CLOCK_FIELDS = {"hour", "minute", "part_of_day", "weekday", "is_weekend", "day", "month", "year", "season", "date"}
ACTIVITY_FIELDS = {"transfers", "holder", "held_since", "held_days"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeaderFromEnv(_Strict):
    env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the secret; the operator must list it in evolve.feed_secrets.",
    )
    format: str = Field("{}", description="Header value with {} where the secret goes, e.g. 'Bearer {}'.")

    @field_validator("env")
    @classmethod
    def _not_a_studio_setting(cls, env: str) -> str:
        # STUDIO_* hold the signer's key and the pinning JWT: a rules file (anyone with the studio's
        # login can save one) must never be able to send them to a URL of its choosing.
        if env.upper().startswith("STUDIO_"):
            raise ValueError(
                f"{env} is one of the studio's own settings (STUDIO_*), which a feed may never read: give the "
                "feed's key a variable of its own (e.g. WEATHER_API_KEY) and ask the operator to list it in "
                "STUDIO_EVOLVE__FEED_SECRETS"
            )
        return env


class HttpJsonFeedRules(_Strict):
    type: Literal["http_json"]
    url: str = Field(pattern=r"^https?://")
    path: str = Field(min_length=1)
    value_type: Literal["number", "text", "bool"] = "number"
    headers: dict[str, str | HeaderFromEnv] = Field(default_factory=dict)
    params: dict[str, str | HeaderFromEnv] = Field(default_factory=dict, description="Query parameters.")
    timeout_s: float = Field(10.0, gt=0, le=120)
    retries: int = Field(2, ge=0, le=10)
    max_age_s: float | None = Field(None, gt=0)
    timestamp_path: str | None = None
    min: float | None = None
    max: float | None = None

    @field_validator("headers", "params")
    @classmethod
    def _no_literal_secrets(cls, values: dict[str, str | HeaderFromEnv]) -> dict[str, str | HeaderFromEnv]:
        # The snapshot (public, on IPFS) names the feed's source, and rules files get shared: a
        # credential written here would leak. It must come from the daemon's environment instead.
        for name, value in values.items():
            if isinstance(value, str) and SECRET_NAME.search(name):
                raise ValueError(
                    f"'{name}' looks like a credential written in the file: give its environment variable "
                    f'instead, {name} = {{ env = "MY_{_env_name(name)}" }} (format = "Bearer {{}}" if needed)'
                )
        return values

    @field_validator("url")
    @classmethod
    def _no_secret_in_url(cls, url: str) -> str:
        _no_credentials(url)
        query = urlsplit(url).query
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if SECRET_NAME.search(name):
                raise ValueError(
                    f"the URL carries '{name}' in its query: move it to params, from the environment: "
                    f'params = {{ {name} = {{ env = "MY_{_env_name(name)}" }} }}'
                )
        return url

    @model_validator(mode="after")
    def _age_needs_timestamp(self) -> HttpJsonFeedRules:
        if self.max_age_s is not None and self.timestamp_path is None:
            raise ValueError("max_age_s needs timestamp_path: the path of the value's timestamp in the document")
        return self


class ChainlinkFeedRules(_Strict):
    type: Literal["chainlink"]
    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    rpc_url: str | None = Field(None, pattern=r"^https?://", description="Another chain's RPC; default: the studio's.")
    max_age_s: float = Field(3600.0, gt=0)
    min: float | None = None
    max: float | None = None

    @field_validator("rpc_url")
    @classmethod
    def _no_credentials_in_rpc_url(cls, url: str | None) -> str | None:
        if url is not None:
            _no_credentials(url)
        return url


class ClockFeedRules(_Strict):
    type: Literal["clock"]
    timezone: str | None = Field(None, description="IANA name; default: settings.evolve.timezone.")
    hemisphere: Literal["north", "south"] = "north"


class ActivityFeedRules(_Strict):
    type: Literal["activity"]


FeedRules = Annotated[
    HttpJsonFeedRules | ChainlinkFeedRules | ClockFeedRules | ActivityFeedRules, Field(discriminator="type")
]


class Case(_Strict):
    """One branch of a trait: the first case whose conditions all hold gives the fragment."""

    fragment: str
    below: float | None = None
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    equals: str | float | bool | None = None
    # `in` is a Python keyword: the file says `in`, the code says one_of.
    one_of: list[str | float] | None = Field(None, alias="in")
    strength: float | None = Field(None, gt=0, le=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def numeric(self) -> bool:
        return any(v is not None for v in (self.below, self.at_least, self.above, self.at_most))


class Trait(_Strict):
    input: str = Field(description="A feed name, or feed.field (clock.season, activity.transfers).")
    cases: list[Case] = Field(min_length=1)
    default: str | None = Field(None, description="Fragment used when the feed has no value and no earlier state.")


class Evolution(_Strict):
    prompt: str = Field("{prompt}", description="Template: {prompt} is the token's own prompt, {<trait>} its fragment.")
    negative_prompt: str = ""
    strength: float = Field(0.35, gt=0, le=1)
    steps: int | None = Field(None, ge=1, le=150)
    guidance_scale: float | None = Field(None, ge=0, le=30)
    variation: list[str] = Field(default_factory=list, description="Per-token fragment, {variation} in the prompt.")
    strength_variation: float = Field(0.0, ge=0, le=0.5, description="Per-token +/- on the strength.")


class Schedule(_Strict):
    every: str | None = Field(None, description="Interval such as '90s', '15m', '1h', '1d'.")
    cron: str | None = Field(None, description="Crontab: minute hour day month weekday.")
    timezone: str | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every = '1h' or cron = '0 * * * *'")
        if self.every is not None and parse_duration(self.every) is None:
            raise ValueError(f"every = '{self.every}' is not a duration like '90s', '15m', '1h' or '1d'")
        return self

    @property
    def interval(self) -> timedelta | None:
        return parse_duration(self.every) if self.every else None


class Rules(_Strict):
    """A whole rules file."""

    schedule: Schedule
    evolution: Evolution = Field(default_factory=Evolution)
    feeds: dict[Annotated[str, Field(pattern=NAME_RE)], FeedRules] = Field(default_factory=dict)
    traits: dict[Annotated[str, Field(pattern=NAME_RE)], Trait] = Field(min_length=1)
    name: str = Field("", exclude=True)
    source_path: str = Field("", exclude=True)


def _no_credentials(url: str) -> None:
    if has_credentials(url):
        raise ValueError(
            "the URL carries a user name or password, which would travel with it into messages: send them as a "
            'header from the environment instead, Authorization = { env = "MY_FEED_AUTH", format = "Basic {}" }'
        )


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() or "SECRET"


def parse_duration(text: str) -> timedelta | None:
    match = DURATION_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        return None
    return timedelta(seconds=float(match.group(1)) * DURATION_UNITS[match.group(2)])


# --- line numbers --------------------------------------------------------------------------------

from studio.tomlfile import TomlTextError, find_line, line_map, parse_toml  # noqa: E402

MAX_RULES_CHARS = 1 << 20

# --- loading ------------------------------------------------------------------------------------

FEED_TAGS = {"http_json", "chainlink", "clock", "activity"}


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts the discriminator's value into the location of a tagged union member.
    cleaned = tuple(part for i, part in enumerate(loc) if not (i == 2 and loc[0] == "feeds" and part in FEED_TAGS))
    # ... and a header's union member (str or HeaderFromEnv) after its name.
    cleaned = tuple(
        part
        for i, part in enumerate(cleaned)
        if not (part in ("str", "HeaderFromEnv") and i >= 2 and cleaned[i - 2] in ("headers", "params"))
    )
    return tuple("in" if part == "one_of" else part for part in cleaned)


def load_rules(path: Path, *, default_timezone: str = "UTC") -> Rules:
    """Read and validate `path`; raise RulesError naming the line and field of the first mistake."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(shown, "file", f"no rules file here: create {path.name} in the rules folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(shown, "file", f"cannot read it ({exc})") from None
    try:
        data = parse_toml(text, what="rules file", max_chars=MAX_RULES_CHARS)
    except TomlTextError as exc:
        raise RulesError(shown, exc.field, exc.message, exc.line) from None
    lines = line_map(text)
    try:
        rules = Rules.model_validate({**data, "name": path.stem, "source_path": shown})
    except ValidationError as exc:
        # A misspelt key also makes the real key "missing": report the misspelling, it is the cause.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        # A header written as a table was meant as { env = ... }: its problem, not "should be a string".
        meant_env = {tuple(e["loc"][:-2]) for e in errors if e["loc"][-2:-1] == ("HeaderFromEnv",)}
        errors = [e for e in errors if not (e["loc"][-1] == "str" and tuple(e["loc"][:-1]) in meant_env)] or errors
        error = errors[0]
        loc = _clean_loc(tuple(error["loc"]))
        if error["type"] == "union_tag_invalid":
            loc = (*loc, "type")
        field = ".".join(str(part) for part in loc) or "file"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field '{loc[-1]}': check its spelling against README.md (Evolution)"
        elif error["type"] == "missing":
            message = "this field is required"
        raise RulesError(shown, field, message, find_line(lines, loc)) from None
    _check_references(rules, shown, lines, default_timezone)
    return rules


def _check_references(rules: Rules, shown: str, lines: dict[tuple[Any, ...], int], default_tz: str) -> None:
    """What pydantic cannot see: names that must point at each other, templates, cron strings."""

    def fail(loc: tuple[Any, ...], message: str) -> None:
        raise RulesError(shown, ".".join(str(p) for p in loc), message, find_line(lines, loc))

    if rules.schedule.cron is not None:
        try:
            CronTrigger.from_crontab(rules.schedule.cron, timezone=rules.schedule.timezone or default_tz)
        except ValueError as exc:
            fail(
                ("schedule", "cron"), f"'{rules.schedule.cron}' is not a crontab (minute hour day month weekday): {exc}"
            )
    for zone_loc, zone in [(("schedule", "timezone"), rules.schedule.timezone)] + [
        (("feeds", name, "timezone"), feed.timezone) for name, feed in rules.feeds.items() if feed.type == "clock"
    ]:
        if zone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                fail(zone_loc, f"unknown timezone '{zone}': use an IANA name such as 'Europe/Paris' or 'UTC'")

    for name, trait in rules.traits.items():
        feed_name, _, field = trait.input.partition(".")
        if feed_name not in rules.feeds:
            known = ", ".join(sorted(rules.feeds)) or "none defined"
            fail(("traits", name, "input"), f"no feed named '{feed_name}' (feeds: {known}); add [feeds.{feed_name}]")
        feed = rules.feeds[feed_name]
        fields = CLOCK_FIELDS if feed.type == "clock" else ACTIVITY_FIELDS if feed.type == "activity" else set()
        if fields and field not in fields:
            fail(
                ("traits", name, "input"),
                f"feed '{feed_name}' ({feed.type}) needs a field: {feed_name}.<one of {', '.join(sorted(fields))}>",
            )
        if not fields and field:
            fail(("traits", name, "input"), f"feed '{feed_name}' ({feed.type}) has one value: write just '{feed_name}'")
        for index, case in enumerate(trait.cases):
            if case.numeric and (case.equals is not None or case.one_of is not None):
                fail(
                    ("traits", name, "cases", index), "mixes a range (below/at_least/...) with equals/in: use one kind"
                )
            if case.below is not None and case.at_least is not None and case.at_least >= case.below:
                fail(("traits", name, "cases", index, "at_least"), "at_least must be smaller than below: empty range")

    try:
        parsed = list(string.Formatter().parse(rules.evolution.prompt))
    except ValueError as exc:
        fail(("evolution", "prompt"), f"not a template ({exc}): write a literal brace as {{{{ or }}}}")
    placeholders: set[str] = set()
    for _literal, placeholder, spec, conversion in parsed:
        if placeholder is None:
            continue
        if spec or conversion:
            # "{prompt:>2000000000}" would allocate 2 GB when filled: placeholders are plain names only.
            written = "{" + placeholder + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            fail(
                ("evolution", "prompt"),
                f"{written} has a format spec or conversion, which templates do not take: write {{{placeholder}}}",
            )
        if not placeholder:
            fail(("evolution", "prompt"), "an empty placeholder {} fills nothing: name it, {prompt} or a trait")
        placeholders.add(placeholder)
    allowed = {"prompt", "variation", *rules.traits}
    for placeholder in sorted(placeholders - allowed):
        fail(
            ("evolution", "prompt"),
            f"unknown placeholder {{{placeholder}}}: use {{prompt}}, {{variation}} or a trait name "
            f"({', '.join(sorted(rules.traits))})",
        )
    if "variation" in placeholders and not rules.evolution.variation:
        fail(("evolution", "prompt"), "uses {variation} but evolution.variation lists no fragments")
