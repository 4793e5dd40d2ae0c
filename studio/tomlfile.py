"""TOML files people write (rules files, collection specs): where each key is written, for errors that
name the line, and a linear scan for nesting that would make tomllib recurse without bound, run before
tomllib reads the text."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from studio.errors import StudioError

_KEY_RE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def line_map(text: str) -> dict[tuple[Any, ...], int]:
    """Where each table, array element and key of a TOML document is written (1-based lines)."""
    lines: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    in_multiline = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.count('"""') % 2 or raw.count("'''") % 2:
            in_multiline = not in_multiline
            if not in_multiline:
                continue
        elif in_multiline:
            continue
        header = _HEADER_RE.match(raw)
        if header and not _KEY_RE.match(raw):
            path = _split_key(header.group(2))
            if header.group(1) == "[[":
                base = _resolve_arrays(path, counts)
                index = counts.get(base, 0)
                counts[base] = index + 1
                lines.setdefault(base, number)
                table = (*base, index)
            else:
                table = _resolve_arrays(path, counts)
            lines.setdefault(table, number)
            continue
        key = _KEY_RE.match(raw)
        if key:
            lines.setdefault((*table, *_split_key(key.group(1))), number)
    return lines


def _resolve_arrays(path: tuple[str, ...], counts: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """`[[a.b]]` inside the 2nd `[[a]]` is a.1.b: insert the current index of enclosing arrays."""
    resolved: tuple[Any, ...] = ()
    for part in path:
        resolved = (*resolved, part)
        if resolved in counts and resolved != path:
            resolved = (*resolved, counts[resolved] - 1)
    return resolved


def find_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


# --- nesting depth -------------------------------------------------------------------------------

# Deeper than any real file nests (a rules file's cases = [{ in = ["a"] }] is 3); tomllib recurses per
# level, and its memory grows with the square of a dotted key's length (a.b.c... with 100,000 parts).
MAX_TOML_DEPTH = 32
MAX_KEY_PARTS = 16
# Strings and comments hide brackets and dots; matched left to right in one pass (no rescans).
_TOML_TOKEN = re.compile(
    r'''"""(?:[^"\\]|\\.|"(?!""))*(?:"""|$)'''  # multi-line basic string
    r"|'''.*?(?:'''|$)"  # multi-line literal string
    r"""|"(?:[^"\\\n]|\\.)*"?"""  # basic string
    r"|'[^'\n]*'?"  # literal string
    r"|#[^\n]*"  # comment
    r"|[\[\]{}.=,\n]",
    re.DOTALL,
)


def toml_nesting_problem(text: str, *, what: str) -> tuple[int, str] | None:
    """(line, message) when arrays and inline tables nest deeper than MAX_TOML_DEPTH, or a dotted key
    or table name has more than MAX_KEY_PARTS parts, found by a linear scan before tomllib reads it.
    `what` names the kind of file in the message."""
    depth = 0
    dots = 0  # since the last delimiter: a dotted key's dots (a float value has one)
    for token in _TOML_TOKEN.finditer(text):
        kind = token.group(0)
        problem = None
        if kind == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                problem = f"a key or table name has more than {MAX_KEY_PARTS} dotted parts: no {what} needs that"
        elif kind in "[]{}=,\n":
            dots = 0
            if kind in "[{":
                depth += 1
                if depth > MAX_TOML_DEPTH:
                    problem = (
                        f"arrays and tables nest more than {MAX_TOML_DEPTH} levels deep: no {what} needs that, "
                        "flatten it"
                    )
            elif kind in "]}":
                depth = max(0, depth - 1)
        if problem is not None:
            return text.count("\n", 0, token.start()) + 1, problem
    return None


class TomlTextError(StudioError):
    """What `parse_toml` found wrong: `field` ("file" or "syntax"), `line` where known. Each kind of file
    raises it again as its own error class, with its file name."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.line = line


def parse_toml(text: str, *, what: str, max_chars: int) -> dict[str, Any]:
    """The TOML document in `text`, read with its size and nesting bounded first (tomllib recurses per
    level: deep enough nesting would kill the process). `what` names the kind of file in messages."""
    if len(text) > max_chars:
        raise TomlTextError("file", f"{len(text):,} characters, over the {max_chars:,} a {what} may have: trim it")
    too_deep = toml_nesting_problem(text, what=what)
    if too_deep is not None:
        raise TomlTextError("syntax", too_deep[1], too_deep[0])
    try:
        return tomllib.loads(text)
    except RecursionError:
        # toml_nesting_problem should have caught it; a RecursionError must still never escape.
        raise TomlTextError("syntax", "nested too deeply to read: flatten the arrays and tables") from None
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's message ends with "(at line L, column C)"; 3.14 adds exc.lineno.
        found = re.search(r"^(.*?)\s*\(at line (\d+), column \d+\)$", str(exc))
        message, line = (found.group(1), int(found.group(2))) if found else (str(exc), None)
        raise TomlTextError("syntax", f"not valid TOML: {message}", line) from None
