"""Rules files as the Evolve tab edits them: list, read, validate text, save only what validates.

A rules file is `<rules_dir>/<collection>.toml`. Text is validated with the same loader the evolution
cycle uses (evolve.rules.load_rules, which is pure: no feed is read), written to a temporary file
beside the target, and only renamed over the real file once it validated, so the scheduler never
picks up a half-written or broken file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evolve.rules import Rules, load_rules
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.minting import RULES_NAME
from studio.services.studio import Studio

MAX_RULES_BYTES = 256 * 1024


@dataclass(frozen=True)
class RulesSummary:
    """What a valid rules file does, in a line each."""

    name: str
    schedule: str
    feeds: dict[str, str]
    traits: list[str]
    strength: float


def _check_name(name: str) -> str:
    text = (name or "").strip()
    if text.endswith(".toml"):
        text = text[: -len(".toml")]
    if not RULES_NAME.match(text):
        raise InvalidInputError(
            f"Rules name {name!r} is not valid: use letters, digits, '-', '_' or '.' (e.g. 'weather')."
        )
    return text


def list_rules(studio: Studio) -> list[str]:
    """The collections that have a rules file, sorted by name."""
    folder = studio.settings.rules_dir
    return sorted(path.stem for path in folder.glob("*.toml")) if folder.is_dir() else []


def read_rules(studio: Studio, name: str) -> str:
    path = studio.settings.rules_dir / f"{_check_name(name)}.toml"
    if not path.is_file():
        raise NotFoundError(f"No rules file {path}: type one in the editor and save it.")
    return path.read_text(encoding="utf-8")


def summarize(name: str, rules: Rules) -> RulesSummary:
    schedule = f"every {rules.schedule.every}" if rules.schedule.every else f"cron {rules.schedule.cron}"
    if rules.schedule.timezone:
        schedule += f" ({rules.schedule.timezone})"
    return RulesSummary(
        name=name,
        schedule=schedule,
        feeds={feed_name: feed.type for feed_name, feed in rules.feeds.items()},
        traits=sorted(rules.traits),
        strength=rules.evolution.strength,
    )


def _load_text(studio: Studio, name: str, text: str, folder: Path) -> Rules:
    if not text.strip():
        raise InvalidInputError("The rules file is empty: start from the example in README (Evolution).")
    data = text.encode("utf-8")
    if len(data) > MAX_RULES_BYTES:
        raise InvalidInputError(f"The rules file is {len(data)} bytes; the most accepted is {MAX_RULES_BYTES}.")
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".toml.tmp", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        rules = load_rules(temp, default_timezone=studio.settings.evolve.timezone)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    temp.unlink(missing_ok=True)
    return rules


def validate_rules_text(studio: Studio, name: str, text: str) -> RulesSummary:
    """Check `text` as the rules of collection `name`; raises RulesError (line and field) when wrong.
    Error messages name a temporary file; they are rewritten to the collection's own file name."""
    name = _check_name(name)
    target = studio.settings.rules_dir / f"{name}.toml"
    try:
        rules = _load_text(studio, name, text, studio.settings.rules_dir)
    except Exception as exc:
        _rename_in_message(exc, target)
        raise
    return summarize(name, rules)


def save_rules(studio: Studio, name: str, text: str) -> RulesSummary:
    """Validate, then atomically replace `<rules_dir>/<name>.toml`. Nothing is written if it is invalid."""
    summary = validate_rules_text(studio, name, text)
    folder = studio.settings.rules_dir
    handle, temp_name = tempfile.mkstemp(prefix=f".{summary.name}.", suffix=".save", dir=folder)
    with os.fdopen(handle, "wb") as file:
        file.write(text.encode("utf-8"))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp_name, folder / f"{summary.name}.toml")
    return summary


def _rename_in_message(exc: BaseException, target: Path) -> None:
    if exc.args and isinstance(exc.args[0], str):
        import re

        exc.args = (re.sub(r"\S*\.toml\.tmp", str(target), exc.args[0]), *exc.args[1:])
