"""Collection metadata for ERC-7572 `contractURI()`: what marketplaces show on the collection page.

Same rules as token metadata: canonical JSON, a JSON Schema (`schemas/collection-metadata.schema.json`),
user text free of markup, images on IPFS, and a royalty recipient whenever a fee is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from metadata.errors import ContentTooLargeError, MetadataValidationError
from metadata.token import (
    MAX_METADATA_BYTES,
    _ipfs_uri,
    _schema_check,
    canonical_json,
    check_user_text,
    load_schema,
)


def build_collection_metadata(
    *,
    name: str,
    description: str,
    image_cid: str | None = None,
    banner_image_cid: str | None = None,
    featured_image_cid: str | None = None,
    external_link: str | None = None,
    seller_fee_basis_points: int = 0,
    fee_recipient: str | None = None,
    collaborators: Sequence[str] = (),
    symbol: str | None = None,
    credentials_ca_cid: str | None = None,
) -> dict[str, Any]:
    """A validated ERC-7572 document; CIDs may be given bare or as ipfs:// URIs. `credentials_ca_cid` is the
    pinned PEM certificate of the CA that signs the collection's Content Credentials: anyone checking a
    token's images uses it as trust anchor (`python -m metadata verify`)."""
    document: dict[str, Any] = {
        "name": name,
        "description": description,
        "seller_fee_basis_points": seller_fee_basis_points,
    }
    if image_cid is not None:  # optional in ERC-7572; the studio's own document starts without one
        document["image"] = _ipfs_uri("image", image_cid)
    if symbol is not None:
        document["symbol"] = symbol
    if banner_image_cid is not None:
        document["banner_image"] = _ipfs_uri("banner_image", banner_image_cid)
    if featured_image_cid is not None:
        document["featured_image"] = _ipfs_uri("featured_image", featured_image_cid)
    if external_link is not None:
        document["external_link"] = external_link
    if fee_recipient is not None:
        document["fee_recipient"] = fee_recipient
    if collaborators:
        document["collaborators"] = list(collaborators)
    if credentials_ca_cid is not None:
        document["content_credentials"] = credentials_field(credentials_ca_cid)
    validate_collection_metadata(document)
    return document


def credentials_field(ca_cid: str) -> dict[str, str]:
    """The collection metadata's `content_credentials`: where the trust anchor is, which assertion is ours."""
    from metadata.credentials import PROVENANCE_LABEL

    return {"trust_anchor": _ipfs_uri("content_credentials.trust_anchor", ca_cid), "assertion": PROVENANCE_LABEL}


def validate_collection_metadata(obj: Mapping[str, Any]) -> bytes:
    """Check schema, text rules and the royalty pair; return the canonical bytes to pin."""
    _schema_check(load_schema("collection-metadata"), obj, "collection metadata")
    check_user_text("name", obj["name"])
    check_user_text("description", obj["description"])
    if "external_link" in obj:
        check_user_text("external_link", obj["external_link"])
    for key in ("image", "banner_image", "featured_image"):
        if key in obj:
            _ipfs_uri(key, obj[key])
    if "content_credentials" in obj:
        _ipfs_uri("content_credentials.trust_anchor", obj["content_credentials"]["trust_anchor"])
    if obj.get("seller_fee_basis_points", 0) > 0 and not obj.get("fee_recipient"):
        raise MetadataValidationError(
            "seller_fee_basis_points is set but fee_recipient is missing: give the address that receives royalties"
        )
    data = canonical_json(obj)
    if len(data) > MAX_METADATA_BYTES:
        raise ContentTooLargeError(f"collection metadata is {len(data):,} bytes; keep it under {MAX_METADATA_BYTES:,}")
    return data
