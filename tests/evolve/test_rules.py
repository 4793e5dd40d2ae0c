"""Rules files: validation errors that name line and field, and pure, deterministic evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.rules import RulesError, load_rules
from studio.rules.evaluation import TokenInput, evaluate
from tests.fixtures.evolve import CLOCK_RULES

RULES = """\
[schedule]
every = "1h"

[evolution]
prompt = "{prompt}, {weather}, {season}, {variation}"
strength = 0.3
variation = ["at dawn", "at dusk", "under neon light"]
strength_variation = 0.05

[feeds.temperature]
type = "http_json"
url = "http://127.0.0.1:1/weather"
path = "current.temperature"
min = -90
max = 60

[feeds.clock]
type = "clock"
timezone = "Europe/Paris"

[feeds.activity]
type = "activity"

[traits.weather]
input = "temperature"
[[traits.weather.cases]]
below = 0
fragment = "frozen, covered in snow"
strength = 0.6
[[traits.weather.cases]]
at_least = 0
below = 25
fragment = "mild air"
[[traits.weather.cases]]
fragment = "scorching heat haze"

[traits.season]
input = "clock.season"
[[traits.season.cases]]
equals = "winter"
fragment = "bare trees"
[[traits.season.cases]]
in = ["spring", "summer", "autumn"]
fragment = "leaves"

[traits.loyalty]
input = "activity.held_days"
default = ""
[[traits.loyalty.cases]]
at_least = 365
fragment = "golden patina"
"""


def write(tmp_path: Path, text: str, name: str = "weather") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def snapshot(temperature: float | None, season: str = "winter", held: dict[int, float] | None = None) -> dict:
    feeds: dict = {
        "temperature": {"ok": True, "value": temperature}
        if temperature is not None
        else {"ok": False, "kind": "unreachable", "error": "down"},
        "clock": {"ok": True, "value": {"season": season, "hour": 9}},
        "activity": {
            "ok": True,
            "value": None,
            "per_token": {str(t): {"held_days": d} for t, d in (held or {}).items()},
        },
    }
    return {"feeds": feeds}


def test_valid_file_loads_with_schedule_and_traits(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, RULES))
    assert rules.name == "weather"
    assert rules.schedule.interval is not None
    assert rules.schedule.interval.total_seconds() == 3600
    assert list(rules.traits) == ["weather", "season", "loyalty"]
    assert rules.traits["season"].cases[1].one_of == ["spring", "summer", "autumn"]


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "says"),
    [
        ('every = "1h"', 'every = "hourly"', "schedule", 1, "is not a duration"),
        ("strength = 0.3", "strength = 1.5", "evolution.strength", 6, "less than or equal to 1"),
        (
            'path = "current.temperature"',
            'pathh = "current.temperature"',
            "feeds.temperature.pathh",
            13,
            "unknown field",
        ),
        ('input = "clock.season"', 'input = "clock.seasons"', "traits.season.input", 38, "needs a field"),
        ('input = "temperature"', 'input = "temp"', "traits.weather.input", 25, "no feed named 'temp'"),
        ("at_least = 0\n", 'at_least = "zero"\n', "traits.weather.cases.1.at_least", 31, "valid number"),
        ('timezone = "Europe/Paris"', 'timezone = "Europe/Pariss"', "feeds.clock.timezone", 19, "unknown timezone"),
        ("{variation}", "{variaton}", "evolution.prompt", 5, "unknown placeholder {variaton}"),
        ('type = "clock"', 'type = "sundial"', "feeds.clock.type", 18, "does not match any of the expected tags"),
        ("min = -90", 'headers = { Authorization = "Bearer abc123" }', "feeds.temperature.headers", 14, "credential"),
        (
            "min = -90",
            'params = { api_key = "abc123" }',
            "feeds.temperature.params",
            14,
            'api_key = { env = "MY_API_KEY" }',
        ),
        ("/weather", "/weather?apikey=abc123", "feeds.temperature.url", 12, "move it to params"),
        # A format spec would allocate what it asks for when the prompt is filled (2 GB here).
        ("{variation}", "{variation:>2000000000}", "evolution.prompt", 5, "{variation:>2000000000} has a format spec"),
        ("{weather}", "{weather!r}", "evolution.prompt", 5, "{weather!r} has a format spec or conversion"),
        ("{variation}", "{}", "evolution.prompt", 5, "an empty placeholder {}"),
        ("{variation}", "{variation", "evolution.prompt", 5, "not a template"),
        # The signer's key must never be a feed's header, whoever saves the file.
        (
            "min = -90",
            'headers = { X-Key = { env = "STUDIO_CHAIN__PRIVATE_KEY" } }',
            "feeds.temperature.headers.X-Key.env",
            14,
            "STUDIO_CHAIN__PRIVATE_KEY is one of the studio's own settings",
        ),
        ("http://127.0.0.1", "http://user:pw@127.0.0.1", "feeds.temperature.url", 12, "user name or password"),
    ],
)
def test_mistakes_name_line_and_field(tmp_path: Path, old: str, new: str, field: str, line: int, says: str) -> None:
    assert old in RULES
    path = write(tmp_path, RULES.replace(old, new, 1))
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    error = caught.value
    assert error.field == field
    assert error.line == line
    assert says in str(error)
    assert str(error).startswith(f"{path}:{line}: {field}: ")


def test_syntax_errors_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"weather.toml:3: syntax: not valid TOML") as caught:
        load_rules(write(tmp_path, '[schedule]\nevery = "1h"\nbroken = \n'))
    assert caught.value.line == 3
    with pytest.raises(RulesError, match="no rules file here"):
        load_rules(tmp_path / "nothing.toml")
    with pytest.raises(RulesError, match=r"schedule: give exactly one of every"):
        load_rules(write(tmp_path, RULES.replace('every = "1h"', 'every = "1h"\ncron = "0 * * * *"')))
    with pytest.raises(RulesError, match=r"schedule.cron: '61 \* \* \* \*' is not a crontab"):
        load_rules(write(tmp_path, RULES.replace('every = "1h"', 'cron = "61 * * * *"')))


def test_evaluation_is_pure_and_deterministic(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, RULES))
    token = TokenInput(token_id=7, seed=1234, prompt="a lighthouse")
    first = evaluate(rules, snapshot(-5.0), token)
    again = evaluate(rules, snapshot(-5.0), token)
    assert first == again
    assert first.changed
    assert first.state is not None
    assert first.state["traits"] == {"weather": "frozen, covered in snow", "season": "bare trees", "loyalty": ""}
    assert first.prompt is not None
    assert first.prompt.startswith("a lighthouse, frozen, covered in snow, bare trees, ")
    assert first.prompt.endswith(first.state["variation"])
    # The cold case raises the strength; the per-token variation moves it by at most 0.05.
    assert first.strength is not None
    assert 0.55 <= first.strength <= 0.65
    # Per-token variation: different tokens may differ, the same token never does.
    variations = {evaluate(rules, snapshot(-5.0), TokenInput(t, t * 31, "x")).state["variation"] for t in range(30)}
    assert variations == {"at dawn", "at dusk", "under neon light"}


def test_regenerate_only_when_mapped_state_changes(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, RULES))
    token = TokenInput(token_id=1, seed=9, prompt="a fox")
    cold = evaluate(rules, snapshot(-5.0), token)
    now_state = TokenInput(1, 9, "a fox", previous_state=cold.state)
    # Colder still: same range, same state, nothing to do.
    assert not evaluate(rules, snapshot(-12.0), now_state).changed
    # Warmer: another case.
    warm = evaluate(rules, snapshot(10.0), now_state)
    assert warm.changed
    assert warm.state["traits"]["weather"] == "mild air"
    # Held for a year: the loyalty trait changes only for that token.
    assert evaluate(rules, snapshot(-5.0, held={1: 400.0}), now_state).state["traits"]["loyalty"] == "golden patina"
    assert not evaluate(rules, snapshot(-5.0, held={2: 400.0}), now_state).changed


def test_feed_outage_keeps_earlier_fragment_or_waits(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, RULES))
    fresh = TokenInput(token_id=3, seed=3, prompt="a tree")
    waiting = evaluate(rules, snapshot(None), fresh)
    assert waiting.state is None
    assert waiting.waiting_on == ("weather",)
    assert not waiting.changed
    earlier = evaluate(rules, snapshot(30.0, held={3: 1.0}), fresh)
    later = TokenInput(3, 3, "a tree", previous_state=earlier.state)
    kept = evaluate(rules, snapshot(None, held={3: 1.0}), later)
    assert kept.kept == ("weather",)
    assert kept.state["traits"]["weather"] == "scorching heat haze"
    assert not kept.changed


def test_readme_example_is_a_valid_rules_file(tmp_path: Path) -> None:
    from tests.fixtures.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### A rules file", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    rules = load_rules(write(tmp_path, example))
    assert set(rules.feeds) == {"temperature", "eth_usd", "clock", "activity"}
    assert list(rules.traits) == ["weather", "season"]
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, example.replace("strength = 0.35", "strength = 2")))
    assert "weather.toml:8: evolution.strength: Input should be less than or equal to 1" in str(caught.value)


@pytest.mark.parametrize(
    ("nested", "says"),
    [
        ("variation = " + "[" * 100_000 + "]" * 100_000, "nest more than 32 levels deep"),
        ("x = " + "{a = " * 50_000 + "1" + "}" * 50_000, "nest more than 32 levels deep"),
        (".".join(["a"] * 100_000) + " = 1", "more than 16 dotted parts"),
    ],
)
def test_hostile_nesting_is_a_rules_error(tmp_path: Path, nested: str, says: str) -> None:
    # tomllib recurses per level (RecursionError, or a crash under web3's recursion limit) and its
    # memory grows with the square of a dotted key's length: refused by a linear scan before it reads.
    text = RULES.replace("strength_variation = 0.05\n", f"strength_variation = 0.05\n{nested}\n")
    with pytest.raises(RulesError, match=says) as caught:
        load_rules(write(tmp_path, text))
    assert caught.value.line == 9
    assert caught.value.field == "syntax"


BASIC3, LITERAL3 = '"' * 3, "'" * 3
BRACKETS_IN_STRINGS = (
    "variation = [\n"
    '  "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ \\" {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",\n'
    "  '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{',\n"
    f"  {BASIC3}[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
    f'  "" a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t \\{BASIC3} {BASIC3},\n'
    f"  {LITERAL3}a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t{LITERAL3},\n"
    "]  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t\n"
)


def test_brackets_and_dots_in_strings_and_comments_are_not_nesting(tmp_path: Path) -> None:
    text = RULES.replace('variation = ["at dawn", "at dusk", "under neon light"]\n', BRACKETS_IN_STRINGS)
    rules = load_rules(write(tmp_path, text))
    assert len(rules.evolution.variation) == 4
    assert rules.evolution.variation[0].startswith("[[[[")


@pytest.mark.slow
def test_hostile_rules_file_is_refused_and_the_other_collections_run(open_studio, evolve_settings, tmp_path) -> None:
    from tests.fixtures.processes import evolve_cli, process_env

    studio = open_studio()
    rules_dir = studio.settings.rules_dir
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "clock.toml").write_text(CLOCK_RULES)
    (rules_dir / "deep.toml").write_text(CLOCK_RULES + "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    env = process_env(evolve_settings, tmp_path)

    once = evolve_cli(env, "once")
    assert once.returncode == 2, once.stderr[-3000:]
    assert "deep: rules file refused" in once.stderr
    assert "deep.toml:11: syntax: arrays and tables nest more than 32 levels deep" in once.stderr
    assert "Traceback" not in once.stderr
    assert "clock: cycle" in once.stdout  # the other collection ran

    status = evolve_cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    entries = {entry["collection"]: entry for entry in json.loads(status.stdout)}
    assert entries["clock"]["rules"] == "ok"
    assert entries["deep"]["rules"].startswith("invalid: ")
