"""A generative collection's spec (TOML) and the seeded draw of each edition's traits.

Pure: no database, no engine, no I/O but reading the spec text. The same spec always gives the same
editions, with the same traits and seeds, on any machine and Python version: draws come from
SHA-256 of the base seed, the edition number and the trait, never from `random` (whose algorithms
may change between versions).

    name = "harbours"                       # the collection's name: letters, digits, '-', '_', '.'
    title = "Harbours"                      # optional: shown in token names ("Harbours #12"); default name
    description = "Twelve harbours at dusk"
    editions = 100
    base_seed = 1234                        # edition n's seed is base_seed + n - 1 (mod 2**32)
    prompt = "a {boat} in a {weather} harbour"
    negative_prompt = "blurry"
    width = 512
    height = 512
    steps = 1                               # optional: the model's own default
    preset = "fast"                         # optional: fast | quality

    [traits.boat]
    trait_type = "Boat"                     # optional: the attribute's name in the metadata; default the key
    [traits.boat.values]                    # value = weight (rarity): sailboat twice as likely as trawler
    sailboat = 60
    trawler = 30
    "golden galleon" = 10

Every mistake is reported as `file:line: field: problem and fix`, as for rules files.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from studio.errors import FileFieldError
from studio.tomlfile import TomlTextError, find_line, line_map, parse_toml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
PLACEHOLDER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_EDITIONS = 10_000
MAX_TRAITS = 32
MAX_VALUES = 1_000
MAX_SPEC_CHARS = 256 * 1024
MAX_SEED = 2**32 - 1
# Rejection draws an edition tries before it picks from the combinations still free; past this many
# combinations in all, those are not listed (a draw that unlucky means weights near zero: reported).
MAX_ATTEMPTS = 1_000
MAX_ENUMERATED = 1_000_000


class CollectionSpecError(FileFieldError, ValueError):
    """A collection spec is wrong. `line` and `field` say where; the message says how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A value's weight: its rarity against the trait's other values (60 and 30: twice as likely).
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class TraitSpec(_Strict):
    """One trait table: its values with their weights, in the order written."""

    trait_type: str | None = Field(None, min_length=1, max_length=100)
    values: dict[str, Weight] = Field(min_length=1, max_length=MAX_VALUES)

    @field_validator("values")
    @classmethod
    def _value_names(cls, values: dict[str, float]) -> dict[str, float]:
        for value in values:
            if not value.strip():
                raise ValueError("a trait value is empty: give it a name, e.g. sailboat = 60")
            if len(value) > 200:
                raise ValueError(f"value '{value[:40]}...' is longer than 200 characters: shorten it")
        return values


class CollectionSpec(_Strict):
    """A validated spec (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = Field(None, min_length=1, max_length=100)
    description: str = Field("", max_length=2_000)
    editions: int = Field(ge=1, le=MAX_EDITIONS)
    base_seed: int = Field(ge=0, le=MAX_SEED)
    prompt: str = Field(min_length=1, max_length=2_000)
    negative_prompt: str = Field("", max_length=2_000)
    width: int | None = Field(None, ge=64, le=4096, multiple_of=8)
    height: int | None = Field(None, ge=64, le=4096, multiple_of=8)
    steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0, le=50)
    preset: Literal["fast", "quality"] | None = None
    traits: dict[str, TraitSpec] = Field(default_factory=dict, max_length=MAX_TRAITS)

    @field_validator("traits")
    @classmethod
    def _trait_names(cls, traits: dict[str, TraitSpec]) -> dict[str, TraitSpec]:
        for name in traits:
            if not re.match(PLACEHOLDER_PATTERN, name):
                raise ValueError(f"trait name '{name}' must be a plain identifier (letters, digits, _) usable as {{}}")
        return traits

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def trait_type(self, trait: str) -> str:
        return self.traits[trait].trait_type or trait

    @property
    def combinations(self) -> int:
        return math.prod(len(trait.values) for trait in self.traits.values())


@dataclass(frozen=True)
class Edition:
    """One edition as the draw gives it: its number (1-based), traits (trait name -> value), seed, prompt."""

    number: int
    traits: dict[str, str]
    seed: int
    prompt: str


# --- loading -------------------------------------------------------------------------------------


def load_spec_file(path: Path) -> tuple[CollectionSpec, str]:
    """(spec, its text) from a file; raise CollectionSpecError naming the line and field of a mistake."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CollectionSpecError(shown, "file", "no such file: give the path of a collection spec (.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectionSpecError(shown, "file", f"cannot read it ({exc})") from None
    return parse_spec(text, source=shown), text


def parse_spec(text: str, *, source: str = "spec") -> CollectionSpec:
    """Validate spec text whole; raise CollectionSpecError at the first mistake (line, field, fix)."""
    try:
        data = parse_toml(text, what="collection spec", max_chars=MAX_SPEC_CHARS)
    except TomlTextError as exc:
        raise CollectionSpecError(source, exc.field, exc.message, exc.line) from None
    lines = line_map(text)
    try:
        spec = CollectionSpec.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also makes the real key "missing": report the misspelling, it is the cause.
        error = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        loc = tuple(error["loc"])
        field = ".".join(str(part) for part in loc) or "file"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field '{loc[-1]}': check its spelling against README.md (Collections)"
        elif error["type"] == "missing":
            message = "this field is required"
        raise CollectionSpecError(source, field, message, find_line(lines, loc)) from None
    _check_prompt(spec, source, lines)
    return spec


def _check_prompt(spec: CollectionSpec, source: str, lines: dict[tuple[Any, ...], int]) -> None:
    def fail(message: str) -> None:
        raise CollectionSpecError(source, "prompt", message, find_line(lines, ("prompt",)))

    try:
        parsed = list(string.Formatter().parse(spec.prompt))
    except ValueError as exc:
        fail(f"not a template ({exc}): write a literal brace as {{{{ or }}}}")
    for _literal, placeholder, format_spec, conversion in parsed:
        if placeholder is None:
            continue
        if format_spec or conversion or not placeholder:
            fail(f"placeholders are plain trait names such as {{boat}}; found {{{placeholder}...}}")
        if placeholder not in spec.traits:
            known = ", ".join(sorted(spec.traits)) or "none defined"
            fail(f"unknown placeholder {{{placeholder}}} (traits: {known}): add [traits.{placeholder}] or fix it")
    # A trait outside the prompt still becomes an attribute: allowed (e.g. a "Background" label).


# --- the draw ------------------------------------------------------------------------------------


def edition_seed(base_seed: int, number: int, regeneration: int = 0) -> int:
    """Edition `number`'s seed: base_seed + number - 1, so a collector can retrace it; a regeneration
    (1, 2, ...) gets a new seed derived from the same inputs."""
    if regeneration == 0:
        return (base_seed + number - 1) % (MAX_SEED + 1)
    digest = hashlib.sha256(f"living-nft-regenerate:{base_seed}:{number}:{regeneration}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _uniform(base_seed: int, number: int, attempt: int, trait: str) -> float:
    digest = hashlib.sha256(f"living-nft-traits:{base_seed}:{number}:{attempt}:{trait}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(values: Mapping[str, float], u: float) -> str:
    total = sum(values.values())
    target = u * total
    running = 0.0
    for value, weight in values.items():
        running += weight
        if target < running:
            return value
    return list(values)[-1]  # u * total rounded up to total


def fill_prompt(spec: CollectionSpec, traits: Mapping[str, str]) -> str:
    return spec.prompt.format_map({name: traits[name] for name in spec.traits})


def draw_editions(spec: CollectionSpec) -> list[Edition]:
    """Every edition's traits, seed and prompt. Editions draw in order; one whose combination an
    earlier edition has drawn again while combinations remain unused ("DNA" uniqueness, as HashLips
    does), so the first `combinations` editions are all different."""
    names = list(spec.traits)
    total = spec.combinations
    used: set[tuple[str, ...]] = set()
    editions = []
    for number in range(1, spec.editions + 1):
        combo = _draw_unique(spec, names, number, used) if len(used) < total else _draw(spec, names, number, 0)
        used.add(combo)
        traits = dict(zip(names, combo, strict=True))
        editions.append(
            Edition(
                number=number,
                traits=traits,
                seed=edition_seed(spec.base_seed, number),
                prompt=fill_prompt(spec, traits),
            )
        )
    return editions


def _draw(spec: CollectionSpec, names: Sequence[str], number: int, attempt: int) -> tuple[str, ...]:
    return tuple(_pick(spec.traits[name].values, _uniform(spec.base_seed, number, attempt, name)) for name in names)


def _draw_unique(
    spec: CollectionSpec, names: Sequence[str], number: int, used: set[tuple[str, ...]]
) -> tuple[str, ...]:
    for attempt in range(MAX_ATTEMPTS):
        combo = _draw(spec, names, number, attempt)
        if combo not in used:
            return combo
    # Few combinations left (or very skewed weights): pick among the free ones by their weight.
    if spec.combinations > MAX_ENUMERATED:
        raise CollectionSpecError(
            spec.name,
            "traits",
            f"edition {number} found no unused trait combination in {MAX_ATTEMPTS} draws: some weights are "
            "too small against the others; raise them or lower editions",
        )
    free = [combo for combo in itertools.product(*(spec.traits[n].values for n in names)) if combo not in used]
    weights = {
        "\x1f".join(combo): math.prod(spec.traits[n].values[v] for n, v in zip(names, combo, strict=True))
        for combo in free
    }
    picked = _pick(weights, _uniform(spec.base_seed, number, MAX_ATTEMPTS, "\x1f"))
    return tuple(picked.split("\x1f")) if names else ()


@dataclass(frozen=True)
class RarityRow:
    """How often one trait value occurs among the editions counted, against its weight's share."""

    trait: str
    trait_type: str
    value: str
    count: int
    share: float
    expected_share: float


def rarity_table(spec: CollectionSpec, traits_of_editions: Iterable[Mapping[str, str]]) -> list[RarityRow]:
    """Each trait value's count and share among `traits_of_editions` (the editions kept), in spec order."""
    editions = list(traits_of_editions)
    rows = []
    for name, trait in spec.traits.items():
        total_weight = sum(trait.values.values())
        for value, weight in trait.values.items():
            count = sum(1 for traits in editions if traits.get(name) == value)
            rows.append(
                RarityRow(
                    trait=name,
                    trait_type=spec.trait_type(name),
                    value=value,
                    count=count,
                    share=count / len(editions) if editions else 0.0,
                    expected_share=weight / total_weight,
                )
            )
    return rows
