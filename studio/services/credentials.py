"""Content Credentials for what the studio publishes: who signs, signing a version, publishing the CA.

`publish_version` signs every PNG it pins through `sign_version`. At start-up the studio publishes the
signing CA (studio.services.trust_anchor): its certificate is pinned and named in the collection metadata
that `contractURI()` points at, so anyone can check a token's images against it without asking the studio.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata as importlib_metadata
from typing import Any

from metadata.credentials import (
    CredentialsOptions,
    ManifestFields,
    SigningIdentity,
    load_signing_identity,
    sign_png,
)
from studio.config import Settings
from studio.services.studio import Studio

log = logging.getLogger(__name__)

CA_FILE_NAME = "content-credentials-ca.pem"


def credentials_options(settings: Settings) -> CredentialsOptions:
    credentials = settings.credentials
    password = credentials.key_password.get_secret_value().encode() if credentials.key_password else None
    return CredentialsOptions(
        folder=settings.credentials_dir,
        enabled=credentials.enabled,
        cert_chain=credentials.cert_chain,
        private_key=credentials.key,
        key_password=password,
    )


def signing_identity(studio: Studio) -> SigningIdentity | None:
    """The identity that signs this studio's images (created on first use), None when signing is off."""
    options = credentials_options(studio.settings)
    return load_signing_identity(options) if options.enabled else None


def studio_version() -> str | None:
    try:
        return importlib_metadata.version("living-nft-studio")
    except importlib_metadata.PackageNotFoundError:
        return None


def previous_image(studio: Studio, previous_metadata_cid: str) -> bytes:
    """The previous version's PNG (the local store keeps everything the studio published)."""
    metadata = json.loads(studio.store.cat(previous_metadata_cid))
    return studio.store.cat(str(metadata["image"]).removeprefix("ipfs://"))


def sign_version(
    studio: Studio,
    identity: SigningIdentity,
    png: bytes,
    *,
    name: str,
    generation_record: dict[str, Any],
    version: int,
    previous_metadata_cid: str | None,
    feed_snapshot_cid: str | None,
    token_id: int | None,
) -> bytes:
    """`png` signed for version `version` of a token of this studio's contract; an evolution names the
    previous version's PNG as its parent. A mint's token id is not known before the chain assigns it."""
    chain = studio.chain
    fields = ManifestFields(
        title=f"{name} (version {version})",
        generation=generation_record,
        version=version,
        previous_metadata_cid=previous_metadata_cid,
        feed_snapshot_cid=feed_snapshot_cid,
        chain_id=chain.chain_id,
        contract=chain.contract_address,
        token_id=token_id,
        studio_version=studio_version(),
    )
    parent = previous_image(studio, previous_metadata_cid) if previous_metadata_cid else None
    return sign_png(png, fields, identity, parent_png=parent)
