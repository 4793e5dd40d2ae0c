"""JSON from outside the studio, parsed only once its size and nesting depth are known to be safe.

Why: importing web3 brings py_ecc, which raises the process's recursion limit to 100000. CPython's JSON
parser recurses once per nested array or object and trusts that limit, so a document nested a few
hundred thousand levels deep (256 KiB of `[`) overflows the C stack and kills the whole process with a
segfault instead of raising. `loads_bounded` measures the depth with a flat scan first and refuses
the document with `JSONLimitError` (a ValueError) before `json.loads` ever sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64

# The only bytes that matter for depth: brackets, and the quotes and backslashes that say whether a
# bracket is inside a string. A linear scan over them (no backtracking, no recursion).
_SIGNIFICANT = re.compile(rb'[\[\]{}"\\]')


class JSONLimitError(ValueError):
    """A JSON document over the size or nesting-depth limit; it was not parsed."""


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data` (0 for a scalar), without recursion."""
    depth = deepest = 0
    in_string = False
    escaped_until = -1  # a backslash in a string makes the next byte literal
    for match in _SIGNIFICANT.finditer(data):
        position = match.start()
        if position < escaped_until:
            continue
        byte = data[position]
        if in_string:
            if byte == 0x5C:  # backslash
                escaped_until = position + 2
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def loads_bounded(data: bytes | str, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "") -> Any:
    """`json.loads(data)` once `data` is at most `max_bytes` long and nested at most `max_depth` deep.

    Raises JSONLimitError (naming `what`, the document, and the limit) before parsing an oversized or too
    deeply nested document, and json.JSONDecodeError (also a ValueError) for one that is not JSON.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    label = what or "the JSON document"
    if len(raw) > max_bytes:
        raise JSONLimitError(f"{label} is {len(raw):,} bytes, over the limit of {max_bytes:,} bytes: not parsed.")
    depth = json_depth(raw)
    if depth > max_depth:
        raise JSONLimitError(
            f"{label} is nested {depth:,} levels deep, over the limit of {max_depth}: not parsed (a hostile or "
            "broken document)."
        )
    return json.loads(raw)
