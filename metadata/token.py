"""Token metadata as marketplaces read it (OpenSea's standard) with the studio's provenance block.

Every version of a token is one JSON document, serialized canonically (`canonical_json`: sorted
keys, UTF-8, separators "," and ":", no NaN) so the same content always gives the same CID, checked
against `schemas/token-metadata.schema.json` and limited to one raw IPFS block (262,144 bytes): the
contract stores only the digest of its `bafkrei...` CID.

Text that marketplaces render (name, description, attribute names and string values) is refused,
not escaped, when it holds HTML tags, `javascript:`/`vbscript:`/`data:text/html` links or control
characters: escaping would change what the artist wrote, and marketplaces render markdown and
HTML differently. Prompts in the provenance block are length-limited only (they are data, and
AUTOMATIC1111 syntax such as `<lora:name:0.8>` is legitimate there).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator

from metadata.cid import parse_cid
from metadata.errors import ContentTooLargeError, InvalidCIDError, MetadataValidationError

MAX_METADATA_BYTES = 262_144
SCHEMA_DIR = Path(__file__).with_name("schemas")

_HTML_TAG = re.compile(r"<\s*[a-zA-Z!/?]")
_SCRIPT_SCHEME = re.compile(r"\b(javascript|vbscript)\s*:|data\s*:\s*text/html", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@cache
def load_schema(name: str) -> Draft202012Validator:
    """A validator for `schemas/<name>.schema.json` (cached: schemas are read once per process)."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def canonical_json(obj: Any) -> bytes:
    """The one byte form of `obj`: sorted keys, UTF-8 (not \\u escapes), no spaces, NaN refused."""
    try:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
            "utf-8"
        )
    except ValueError as exc:
        raise MetadataValidationError(f"metadata cannot be serialized canonically: {exc} (NaN or Infinity)") from exc
    except TypeError as exc:
        raise MetadataValidationError(f"metadata holds a value JSON cannot represent: {exc}") from exc


def check_user_text(field: str, value: str) -> None:
    """Refuse text a marketplace would render as markup or script (see the module docstring)."""
    if _HTML_TAG.search(value):
        raise MetadataValidationError(
            f"{field} contains an HTML tag; marketplaces would render it. Remove '<...>' (a lone '<' is fine)."
        )
    if _SCRIPT_SCHEME.search(value):
        raise MetadataValidationError(f"{field} contains a script link (javascript:, vbscript: or data:text/html)")
    if _CONTROL.search(value):
        raise MetadataValidationError(f"{field} contains control or text-direction characters; remove them")


def _ipfs_uri(field: str, value: str) -> str:
    """`ipfs://<cid>[/path]` from a CID or an ipfs:// URI, checking the CID."""
    text = value if value.startswith("ipfs://") else f"ipfs://{value}"
    try:
        parse_cid(text[len("ipfs://") :].split("/", 1)[0])
    except InvalidCIDError as exc:
        raise MetadataValidationError(f"{field}: {exc}") from exc
    return text


@dataclass(frozen=True)
class Attribute:
    """One OpenSea trait. Numbers may carry a display_type; dates are unix timestamps (seconds)."""

    trait_type: str
    value: str | int | float | bool
    display_type: Literal["number", "boost_number", "boost_percentage", "date"] | None = None
    max_value: int | float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trait_type": self.trait_type, "value": self.value}
        if self.display_type is not None:
            out["display_type"] = self.display_type
        if self.max_value is not None:
            out["max_value"] = self.max_value
        return out


def trait_attributes(traits: Mapping[str, str], trait_types: Mapping[str, str] | None = None) -> list[Attribute]:
    """OpenSea `attributes` from a generative edition's traits (trait name -> value), in their order;
    `trait_types` renames a trait for display (e.g. boat -> "Boat")."""
    names = trait_types or {}
    return [Attribute(trait_type=names.get(trait, trait), value=value) for trait, value in traits.items()]


def _format_time(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise MetadataValidationError("provenance created_at must be timezone-aware (UTC)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_provenance(
    *,
    version: int,
    previous: str | None,
    generation: Mapping[str, Any],
    feed_snapshot: str | None = None,
    created_at: datetime | str | None = None,
) -> dict[str, Any]:
    """The provenance block of docs/architecture.md; CIDs may be given bare or as ipfs:// URIs."""
    return {
        "version": version,
        "previous": _ipfs_uri("provenance.previous", previous) if previous else None,
        "generation": dict(generation),
        "feed_snapshot": _ipfs_uri("provenance.feed_snapshot", feed_snapshot) if feed_snapshot else None,
        "created_at": _format_time(created_at or datetime.now(UTC)),
    }


def build_token_metadata(
    *,
    name: str,
    description: str,
    image_cid: str,
    attributes: Sequence[Attribute | Mapping[str, Any]],
    provenance: Mapping[str, Any],
    external_url: str | None = None,
    background_color: str | None = None,
    animation_cid: str | None = None,
) -> dict[str, Any]:
    """A validated token metadata document, ready for `canonical_json` and pinning."""
    document: dict[str, Any] = {
        "name": name,
        "description": description,
        "image": _ipfs_uri("image", image_cid),
        "attributes": [a.to_json() if isinstance(a, Attribute) else dict(a) for a in attributes],
        "provenance": dict(provenance),
    }
    if external_url is not None:
        document["external_url"] = external_url
    if background_color is not None:
        document["background_color"] = background_color.removeprefix("#")
    if animation_cid is not None:
        document["animation_url"] = _ipfs_uri("animation_url", animation_cid)
    validate_token_metadata(document)
    return document


def _field_path(error: Any) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(document)"


def _schema_check(validator: Draft202012Validator, obj: Any, what: str) -> None:
    errors = sorted(validator.iter_errors(obj), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        first = errors[0]
        raise MetadataValidationError(f"{what} field {_field_path(first)}: {first.message}")


def _check_numbers(obj: Any, path: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise MetadataValidationError(f"{path} is {obj}; JSON metadata cannot hold NaN or Infinity")
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _check_numbers(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            _check_numbers(value, f"{path}/{index}")


def validate_token_metadata(obj: Mapping[str, Any]) -> bytes:
    """Check schema, text rules, provenance chain and size; return the canonical bytes to pin."""
    _check_numbers(obj, "metadata")
    _schema_check(load_schema("token-metadata"), obj, "token metadata")
    check_user_text("name", obj["name"])
    check_user_text("description", obj["description"])
    if "external_url" in obj:
        check_user_text("external_url", obj["external_url"])
    for index, attribute in enumerate(obj["attributes"]):
        check_user_text(f"attributes/{index}/trait_type", attribute["trait_type"])
        if isinstance(attribute["value"], str):
            check_user_text(f"attributes/{index}/value", attribute["value"])
    for key in ("image", "animation_url"):
        if key in obj:
            _ipfs_uri(key, obj[key])
    provenance = obj["provenance"]
    if provenance["version"] == 0 and provenance["previous"] is not None:
        raise MetadataValidationError("provenance/previous must be null for version 0 (the mint)")
    if provenance["version"] > 0 and provenance["previous"] is None:
        raise MetadataValidationError(
            f"provenance/previous is null but version is {provenance['version']}: link the previous version's "
            "metadata CID so the chain leads back to the mint"
        )
    data = canonical_json(obj)
    if len(data) > MAX_METADATA_BYTES:
        raise ContentTooLargeError(
            f"token metadata is {len(data):,} bytes serialized; it must fit one IPFS block of {MAX_METADATA_BYTES:,} "
            "bytes (the contract stores a raw-block CID). Shorten the description or attributes."
        )
    return data
