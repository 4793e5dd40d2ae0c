"""The one way to parse JSON that came from outside (a feed, a gateway, a token's metadata read from
the chain): size and nesting depth are checked before `json.loads` ever sees the document.

Why: `json.loads` recurses once per nesting level, in C. Deep enough nesting (a 400 KB feed body, a
256 KiB metadata document) overflows the C stack and kills the process with SIGSEGV, the web app and
the scheduler with it. A linear scan that counts brackets outside strings costs little and makes one
hostile document one refused document.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from metadata.errors import BoundedJSONError

DEFAULT_MAX_DEPTH = 64
# A JSON string with its escapes, written unrolled. The closing quote is optional so that a match
# never fails once started: an unterminated string ends the scan instead of being retried from each
# quote inside it (quadratic). json.loads reads string boundaries the same way.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes) -> int:
    """How deeply `data`'s arrays and objects nest (0 for a scalar), counted without parsing.
    Brackets inside strings do not count, nor do those after an unterminated string: json.loads reads
    them as part of that string and refuses the document without going deeper."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b'""', data))
    return max(accumulate(_STEP[byte] for byte in brackets), default=0)


def load_json_bounded(
    data: bytes | str, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "the document"
) -> Any:
    """Parse JSON from outside. Raises BoundedJSONError (a ValueError) naming `what` when it is larger
    than `max_bytes`, nests deeper than `max_depth`, is not UTF-8 or is not JSON."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise BoundedJSONError(f"{what} is {len(raw):,} bytes, over the limit of {max_bytes:,}: it is refused unread")
    depth = json_depth(raw)
    if depth > max_depth:
        raise BoundedJSONError(
            f"{what} nests {depth:,} levels deep, deeper than the {max_depth} allowed: it is refused unparsed"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BoundedJSONError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and int() of a number over 4,300 digits
        raise BoundedJSONError(f"{what} is not JSON ({exc})") from None
