"""The collection spec and the seeded draw of traits (pure: no database, no model)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from studio.collections.spec import (
    CollectionSpecError,
    draw_editions,
    edition_seed,
    load_spec_file,
    parse_spec,
    rarity_table,
)

SPEC = """\
name = "harbours"
description = "Harbours at dusk"
editions = 12
base_seed = 1234
prompt = "a {boat} in a {weather} harbour"
negative_prompt = "blurry"
width = 64
height = 64

[traits.boat]
trait_type = "Boat"
[traits.boat.values]
sailboat = 60
trawler = 30
"golden galleon" = 10

[traits.weather.values]
fog = 1
sun = 1
"""


def test_same_spec_gives_the_same_collection() -> None:
    first = draw_editions(parse_spec(SPEC))
    second = draw_editions(parse_spec(SPEC))
    assert first == second
    assert [e.number for e in first] == list(range(1, 13))
    assert [e.seed for e in first] == [1234 + n for n in range(12)]
    assert first[0].prompt == f"a {first[0].traits['boat']} in a {first[0].traits['weather']} harbour"
    other_seed = draw_editions(parse_spec(SPEC.replace("base_seed = 1234", "base_seed = 99")))
    assert [e.traits for e in other_seed] != [e.traits for e in first]


def test_no_two_editions_share_a_combination_while_combinations_remain() -> None:
    editions = draw_editions(parse_spec(SPEC))  # 3 x 2 = 6 combinations, 12 editions
    combos = [tuple(e.traits.values()) for e in editions]
    assert len(set(combos[:6])) == 6  # every combination before any repeats
    bigger = draw_editions(
        parse_spec(
            SPEC.replace("editions = 12", "editions = 200").replace(
                "fog = 1",
                "fog = 1\nrain = 1\nsnow = 1\nstorm = 1\nmist = 1\nhail = 1\nwind = 1\nclear = 1\ndrizzle = 1\n"
                + "\n".join(f"w{i} = 1" for i in range(60)),
            )
        )
    )
    bigger_combos = [tuple(e.traits.values()) for e in bigger]
    assert len(set(bigger_combos)) == 200


def test_weights_make_rarity() -> None:
    spec = parse_spec(
        SPEC.replace("editions = 12", "editions = 2000")
        .replace("[traits.weather.values]\nfog = 1\nsun = 1\n", "")
        .replace(" in a {weather} harbour", "")
    )
    editions = draw_editions(spec)
    counts = Counter(e.traits["boat"] for e in editions)
    # 60/30/10 weights: shares within a few percent over 2000 draws (3 combinations: repeats allowed)
    assert 0.55 < counts["sailboat"] / 2000 < 0.65
    assert 0.25 < counts["trawler"] / 2000 < 0.35
    assert 0.07 < counts["golden galleon"] / 2000 < 0.13
    table = {(r.trait, r.value): r for r in rarity_table(spec, [e.traits for e in editions])}
    assert table["boat", "trawler"].count == counts["trawler"]
    assert table["boat", "trawler"].share == counts["trawler"] / 2000
    assert table["boat", "trawler"].expected_share == pytest.approx(0.3)
    assert table["boat", "sailboat"].trait_type == "Boat"


def test_regeneration_seed_is_new_and_retraceable() -> None:
    assert edition_seed(1234, 3) == 1236
    assert edition_seed(2**32 - 1, 2) == 0
    again = {edition_seed(1234, 3, k) for k in range(1, 20)}
    assert len(again) == 19
    assert 1236 not in again
    assert edition_seed(1234, 3, 1) == edition_seed(1234, 3, 1)


@pytest.mark.parametrize(
    ("change", "field", "line", "words"),
    [
        (("editions = 12", "editions = 0"), "editions", 3, "greater than or equal to 1"),
        (("editions = 12", "editions = 10001"), "editions", 3, "less than or equal to 10000"),
        (("editions = 12", "editons = 12"), "editons", 3, "unknown field 'editons'"),
        (("trawler = 30", "trawler = -1"), "traits.boat.values.trawler", 14, "greater than 0"),
        (("trawler = 30", 'trawler = "many"'), "traits.boat.values.trawler", 14, "valid number"),
        (("trawler = 30", "trawler = nan"), "traits.boat.values.trawler", 14, "finite number"),
        (("{weather} harbour", "{wether} harbour"), "prompt", 5, "unknown placeholder {wether}"),
        (("{weather} harbour", "{weather!r} harbour"), "prompt", 5, "plain trait names"),
        (('name = "harbours"', 'name = "../etc"'), "name", 1, "should match pattern"),
        (("width = 64", "width = 65"), "width", 7, "multiple of 8"),
        (("base_seed = 1234\n", ""), "base_seed", None, "required"),
        (("[traits.weather.values]", "[traits.weather.values"), "syntax", 17, "not valid TOML"),
    ],
)
def test_mistakes_name_line_and_field(change: tuple[str, str], field: str, line: int | None, words: str) -> None:
    text = SPEC.replace(*change)
    assert text != SPEC
    with pytest.raises(CollectionSpecError) as caught:
        parse_spec(text, source="harbours.toml")
    error = caught.value
    assert (error.field, error.line) == (field, line), str(error)
    assert words in str(error)
    assert str(error).startswith(f"harbours.toml:{line}: {field}: " if line else f"harbours.toml: {field}: ")


def test_hostile_spec_is_refused_before_parsing(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(CollectionSpecError, match="nest"):
        load_spec_file(deep)
    with pytest.raises(CollectionSpecError, match="no such file"):
        load_spec_file(tmp_path / "missing.toml")
    huge = "x" * 300_000
    with pytest.raises(CollectionSpecError, match="over the"):
        parse_spec(f'name = "{huge}"')
