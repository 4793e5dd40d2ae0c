"""Rules files as the Evolve tab and the Mint tab use them: list, read, validate text, save only what
validates, and check that a living token's rules file exists and is valid.

The rules folder itself (paths, names, atomic saves) belongs to studio.rules; this module adds what a
person sees: a one-line summary of valid rules, and errors in the services' terms (a missing file is
NotFoundError, a bad name InvalidInputError).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio import rules as rules_folder
from studio.rules import Rules, RulesNameError
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.studio import Studio


@dataclass(frozen=True)
class RulesSummary:
    """What a valid rules file does, in a line each."""

    name: str
    schedule: str
    feeds: dict[str, str]
    traits: list[str]
    strength: float


def _check_name(name: str) -> str:
    """The collection name a person typed, without surrounding space or a trailing .toml."""
    text = (name or "").strip().removesuffix(".toml")
    try:
        return rules_folder.check_rules_name(text)
    except RulesNameError as exc:
        raise InvalidInputError(str(exc)) from None


def list_rules(studio: Studio) -> list[str]:
    """The collections that have a rules file, sorted by name."""
    return list(rules_folder.list_rules(studio.settings.rules_dir))


def read_rules(studio: Studio, name: str) -> str:
    text = rules_folder.read_rules_text(studio.settings.rules_dir, _check_name(name))
    if text is None:
        path = rules_folder.rules_path(studio.settings.rules_dir, _check_name(name))
        raise NotFoundError(f"No rules file {path}: type one in the editor and save it.")
    return text


def check_living_rules(studio: Studio, rules_name: str) -> Rules:
    """The valid rules a living token would evolve by: NotFoundError when the file is missing,
    InvalidInputError for a bad name, RulesError (line and field) when the file is wrong."""
    try:
        path = rules_folder.rules_path(studio.settings.rules_dir, rules_name)
    except RulesNameError as exc:
        raise InvalidInputError(str(exc)) from None
    if not path.is_file():
        raise NotFoundError(
            f"No rules file {path}: write it (see README, Evolution) or choose an existing one in the Evolve tab."
        )
    return rules_folder.load_collection(
        studio.settings.rules_dir, rules_name, default_timezone=studio.settings.evolve.timezone
    )


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


def validate_rules_text(studio: Studio, name: str, text: str) -> RulesSummary:
    """Check `text` as the rules of collection `name`; raises RulesError (line and field) when wrong."""
    name = _check_name(name)
    rules = rules_folder.validate_rules_text(
        studio.settings.rules_dir, name, text, default_timezone=studio.settings.evolve.timezone
    )
    return summarize(name, rules)


def save_rules(studio: Studio, name: str, text: str) -> RulesSummary:
    """Validate, then atomically replace `<rules_dir>/<name>.toml`. Nothing is written if it is invalid."""
    name = _check_name(name)
    rules = rules_folder.save_rules_text(
        studio.settings.rules_dir, name, text, default_timezone=studio.settings.evolve.timezone
    )
    return summarize(name, rules)
