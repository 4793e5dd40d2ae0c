"""Outside JSON is measured before it is parsed: size and nesting depth, with a flat scan."""

from __future__ import annotations

import json

import pytest

from metadata.errors import BoundedJSONError
from metadata.jsonsafe import json_depth, load_json_bounded


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        (r'["[[[\"[[", "\\", [[]]]', 3),  # brackets in strings, escaped quotes and backslashes
        (r'{"k\"}": {"v": "\\\\"}}', 2),
    ],
)
def test_depth_ignores_brackets_inside_strings(text, depth) -> None:
    assert json_depth(text.encode()) == depth
    json.loads(text)  # each case is valid JSON


def test_documents_within_the_limits_parse_as_json_loads_would() -> None:
    document = {"name": "Living #1", "attributes": [{"trait_type": "mood", "value": "calm [ { \\"}]}
    text = json.dumps(document)
    assert load_json_bounded(text, max_bytes=1024) == document
    assert load_json_bounded(text.encode(), max_bytes=1024, max_depth=3) == document


def test_too_deep_or_too_large_is_refused_before_parsing() -> None:
    deep = b"[" * 300_000 + b"]" * 300_000  # json.loads would overflow the C stack under web3's limit
    with pytest.raises(BoundedJSONError, match=r"token 7's metadata nests 300,000 levels deep.*64 allowed"):
        load_json_bounded(deep, max_bytes=10**7, what="token 7's metadata")
    with pytest.raises(BoundedJSONError, match="over the limit of 100"):
        load_json_bounded(b'"' + b"a" * 200 + b'"', max_bytes=100)
    with pytest.raises(BoundedJSONError, match="2 allowed"):
        load_json_bounded('{"a": {"b": {}}}', max_bytes=100, max_depth=2)
    with pytest.raises(BoundedJSONError, match="not JSON"):
        load_json_bounded(b"[1,", max_bytes=100)
