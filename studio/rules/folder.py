"""The rules folder: one `<name>.toml` per collection. List, path, read, validate, save and load.

This is the one place that turns a rules name into a path (`rules_path`), and it refuses any name that
is not a plain file name first, so no name can reach outside the folder. Saving validates the text
with the same loader the evolution cycle uses, through a temporary file beside the target, and only
then renames it over the real file: the scheduler never picks up a half-written or broken file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from studio.rules.errors import RulesError, RulesNameError
from studio.rules.model import Rules, load_rules

RULES_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SUFFIX = ".toml"
MAX_RULES_BYTES = 256 * 1024


def check_rules_name(name: str) -> str:
    """`name` when it can name a rules file (letters, digits, '-', '_', '.'; no path); else RulesNameError."""
    if not RULES_NAME.match(name or ""):
        raise RulesNameError(name)
    return name


def rules_path(rules_dir: Path, name: str) -> Path:
    """Where the rules of collection `name` live: `<rules_dir>/<name>.toml` (the name checked first)."""
    return rules_dir / f"{check_rules_name(name)}{SUFFIX}"


def list_rules(rules_dir: Path) -> dict[str, Path]:
    """Every rules file in the folder by collection name, sorted by name (empty when there is no folder)."""
    if not rules_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(rules_dir.glob(f"*{SUFFIX}"))}


def read_rules_text(rules_dir: Path, name: str) -> str | None:
    """The text of collection `name`'s rules file, or None when there is none."""
    path = rules_path(rules_dir, name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def load_collection(rules_dir: Path, name: str, *, default_timezone: str = "UTC") -> Rules:
    """The validated rules of collection `name`; RulesError names the line and field of a mistake."""
    return load_rules(rules_path(rules_dir, name), default_timezone=default_timezone)


def validate_rules_text(rules_dir: Path, name: str, text: str, *, default_timezone: str = "UTC") -> Rules:
    """Check `text` as the rules of collection `name` without touching its file. Errors name the
    collection's own file (never the temporary one the text was checked in)."""
    target = rules_path(rules_dir, name)
    if not text.strip():
        raise RulesError(str(target), "file", "the rules file is empty: start from the example in README (Evolution)")
    data = text.encode("utf-8")
    if len(data) > MAX_RULES_BYTES:
        raise RulesError(str(target), "file", f"{len(data)} bytes; the most accepted is {MAX_RULES_BYTES}: trim it")
    rules_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{SUFFIX}.tmp", dir=rules_dir)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return load_rules(temp, default_timezone=default_timezone)
    except Exception as exc:
        _rename_in_message(exc, target)
        raise
    finally:
        temp.unlink(missing_ok=True)


def save_rules_text(rules_dir: Path, name: str, text: str, *, default_timezone: str = "UTC") -> Rules:
    """Validate `text`, then atomically replace `<rules_dir>/<name>.toml`. Nothing is written if it is invalid."""
    rules = validate_rules_text(rules_dir, name, text, default_timezone=default_timezone)
    handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".save", dir=rules_dir)
    with os.fdopen(handle, "wb") as file:
        file.write(text.encode("utf-8"))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp_name, rules_path(rules_dir, name))
    return rules


def _rename_in_message(exc: BaseException, target: Path) -> None:
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (re.sub(r"\S*\.toml\.tmp", str(target), exc.args[0]), *exc.args[1:])
