"""Publishing the Content Credentials CA: its certificate pinned and named (`content_credentials.
trust_anchor`) in the collection metadata that `contractURI()` points at, so anyone can check a token's
images against it without asking the studio. A start-up step (studio.services.startup).
"""

from __future__ import annotations

import logging
from typing import Any

from metadata.collection import build_collection_metadata, credentials_field, validate_collection_metadata
from metadata.errors import ContentError
from metadata.jsonsafe import load_json_bounded
from metadata.token import MAX_METADATA_BYTES
from studio.services.credentials import CA_FILE_NAME, signing_identity
from studio.services.errors import StudioError
from studio.services.publishing import pin_content
from studio.services.studio import Studio

log = logging.getLogger(__name__)


def _collection_document(studio: Studio, uri: str) -> dict[str, Any] | None:
    """The collection metadata `contractURI()` names, when the local store holds it."""
    if not uri.startswith("ipfs://"):
        return None
    cid = uri.removeprefix("ipfs://").split("/", 1)[0]
    try:
        if not studio.store.has(cid):
            return None
        data = studio.store.cat(cid)
        document = load_json_bounded(data, max_bytes=MAX_METADATA_BYTES, what="the collection metadata")
    except ContentError:
        return None
    return document if isinstance(document, dict) else None


def pin_trust_anchor(studio: Studio) -> str | None:
    """Pin the CA certificate that signs the studio's Content Credentials; its CID (None when signing
    is off). Every collection document the studio publishes names it (`content_credentials`)."""
    identity = signing_identity(studio)
    if identity is None:
        return None
    return pin_content(studio, identity.trust_anchor_pem, name=CA_FILE_NAME, content_type="application/x-pem-file")


def publish_trust_anchor(studio: Studio) -> str | None:
    """Pin the signing CA's certificate and make the collection metadata (`contractURI`) name it; return
    the certificate's CID (None when signing is off). Run when the studio opens its chain, so the
    identity exists and the anchor is published before the first image is signed; cheap when nothing
    changed (one read of the chain). A contract this studio does not administer keeps its contractURI:
    the CA is still pinned, and collectors give it to the verifier with --trust-anchor."""
    ca_cid = pin_trust_anchor(studio)
    if ca_cid is None:
        return None
    client = studio.chain.client
    current_uri = client.contract_uri()
    existing = _collection_document(studio, current_uri)
    wanted = credentials_field(ca_cid)
    if existing is not None and existing.get("content_credentials") == wanted:
        return ca_cid
    if not client.has_role("DEFAULT_ADMIN_ROLE", client.signer.address):
        log.warning(
            "the studio's account does not administer contract %s: its contractURI cannot name the Content "
            "Credentials CA ipfs://%s; collectors verify with --trust-anchor",
            client.address,
            ca_cid,
        )
        return ca_cid
    if existing is not None:
        document = {**existing, "content_credentials": wanted}
    elif current_uri:
        # Set by someone else, to a document this studio does not hold: never replaced behind their back.
        log.warning(
            "contractURI %s is not a collection document this studio holds: it is left as it is; add "
            '"content_credentials": {"trust_anchor": "ipfs://%s"} to it, or collectors verify with --trust-anchor',
            current_uri,
            ca_cid,
        )
        return ca_cid
    else:
        chain_settings = studio.settings.chain
        document = build_collection_metadata(
            name=chain_settings.collection_name,
            symbol=chain_settings.collection_symbol,
            description="",
            credentials_ca_cid=ca_cid,
        )
    data = validate_collection_metadata(document)
    collection_cid = pin_content(studio, data, name="collection.json", content_type="application/json")
    client.set_contract_uri(f"ipfs://{collection_cid}")
    log.info("contractURI now names the Content Credentials CA ipfs://%s", ca_cid)
    return ca_cid


def ensure_trust_anchor(studio: Studio) -> None:
    """`publish_trust_anchor` at chain start-up: a failure (a pinning service down, a node refusing the
    transaction) is logged and retried at the next start, never a reason not to start."""
    from contracts.errors import ChainError

    try:
        publish_trust_anchor(studio)
    except (StudioError, ContentError, ChainError) as exc:
        log.warning("could not publish the Content Credentials CA in the collection metadata: %s", exc)
