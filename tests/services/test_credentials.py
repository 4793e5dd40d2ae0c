"""Content Credentials (C2PA) on every published image: signed at publish time, read by the real c2pa reader."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from metadata.cid import cid_for_bytes
from metadata.credentials import (
    TRAINED_ALGORITHMIC_MEDIA,
    CredentialsOptions,
    ManifestFields,
    load_signing_identity,
    read_credentials,
    sign_png,
)
from metadata.errors import CredentialsError
from metadata.png import read_png_latents, read_png_metadata
from studio.generation import GenerationRequest, init_image_from_png
from studio.services import drafts, minting
from studio.services.credentials import signing_identity
from studio.services.publishing import publish_version
from studio.services.studio import Studio
from studio.services.trust_anchor import publish_trust_anchor

RECIPIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def _published_ca(studio: Studio) -> bytes:
    """The trust anchor as a collector finds it: contractURI -> collection metadata -> CA certificate."""
    collection = json.loads(studio.store.cat(studio.chain.client.contract_uri().removeprefix("ipfs://")))
    return studio.store.cat(collection["content_credentials"]["trust_anchor"].removeprefix("ipfs://"))


def test_mint_and_evolution_are_signed_and_chained(studio: Studio) -> None:
    made = drafts.create_draft(studio, prompt="a lighthouse", seed=3, width=64, height=64)
    minted = minting.mint_draft(studio, made.draft.id, name="Lighthouse", recipient=RECIPIENT)
    first_png = studio.store.cat(minted.published.image_cid)
    # The CID is computed over the signed file, and the draft itself stays unsigned.
    assert cid_for_bytes(first_png) == minted.published.image_cid
    assert read_credentials(made.png).state == "missing"
    # The A1111 chunks and the latents written before signing are still there, unchanged.
    assert read_png_metadata(first_png) == read_png_metadata(made.png)
    assert read_png_latents(first_png) == read_png_latents(made.png)

    ca = _published_ca(studio)
    first = read_credentials(first_png, ca)
    assert first.state == "trusted", first.problems
    assert first.action == "c2pa.created"
    assert first.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert first.parent_manifest is None
    assert first.provenance is not None
    assert first.provenance["chain_id"] == studio.chain.chain_id
    assert first.provenance["contract"] == studio.chain.contract_address
    assert first.provenance["generation"]["seed"] == 3
    assert first.provenance["version"] == 0

    # An evolution: img2img from the signed PNG starts from its latents, and its image is c2pa.edited
    # with the mint's PNG as parent.
    init_image, init_latents = init_image_from_png(first_png)
    assert init_latents is not None
    evolved = studio.engine.generate(
        GenerationRequest(
            prompt="a lighthouse at night",
            seed=3,
            width=64,
            height=64,
            init_image=init_image,
            init_latents=init_latents,
            init_image_cid=minted.published.image_cid,
            strength=0.6,
        )
    )
    assert evolved.record["init_from"] == "latents"
    published = publish_version(
        studio,
        name="Lighthouse",
        description="",
        attributes=[],
        image_png=evolved.png,
        generation_record=evolved.record,
        version=1,
        previous_metadata_cid=minted.published.metadata_cid,
        token_id=minted.token_id,
    )
    second = read_credentials(studio.store.cat(published.image_cid), ca)
    assert second.state == "trusted", second.problems
    assert second.action == "c2pa.edited"
    assert second.parent_manifest == first.manifest
    assert second.manifests == 2
    assert second.provenance is not None
    assert second.provenance["token_id"] == minted.token_id
    assert second.provenance["previous"] == f"ipfs://{minted.published.metadata_cid}"

    # Under another CA the same image is intact but not trusted.
    other = load_signing_identity(CredentialsOptions(folder=studio.settings.data_dir / "other-ca"))
    assert read_credentials(studio.store.cat(published.image_cid), other.trust_anchor_pem).state == "valid"


def test_img2img_from_a_signed_png_uses_its_latents(studio: Studio) -> None:
    made = drafts.create_draft(studio, prompt="a field", seed=8, width=64, height=64)
    identity = signing_identity(studio)
    assert identity is not None
    fields = ManifestFields(title="a field", generation=made.draft.provenance, version=0)
    signed = sign_png(made.png, fields, identity)
    image, latents = init_image_from_png(signed)
    plain_image, plain_latents = init_image_from_png(made.png)
    assert latents == plain_latents
    assert np.array_equal(np.asarray(image), np.asarray(plain_image))


def test_own_keys_are_private_and_reused(tmp_path: Path) -> None:
    options = CredentialsOptions(folder=tmp_path / "credentials")
    identity = load_signing_identity(options)
    for name in ("ca.key", "signer.key"):
        assert stat.S_IMODE((options.folder / name).stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in repr(identity).encode()
    again = load_signing_identity(options)
    assert again.trust_anchor_pem == identity.trust_anchor_pem
    assert again.cert_chain_pem == identity.cert_chain_pem

    os.chmod(options.folder / "signer.key", 0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        load_signing_identity(options)


def test_operator_chain_and_key(tmp_path: Path) -> None:
    own = load_signing_identity(CredentialsOptions(folder=tmp_path / "issued"))
    chain = tmp_path / "chain.pem"
    key = tmp_path / "key.pem"
    chain.write_bytes(own.cert_chain_pem)
    key.write_bytes(own.private_key_pem)
    key.chmod(0o600)
    identity = load_signing_identity(CredentialsOptions(folder=tmp_path / "unused", cert_chain=chain, private_key=key))
    assert identity.trust_anchor_pem == own.trust_anchor_pem
    assert not (tmp_path / "unused").exists()

    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(own.cert_chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
    with pytest.raises(CredentialsError, match="self-signed or lone leaf"):
        load_signing_identity(CredentialsOptions(folder=tmp_path / "x", cert_chain=leaf_only, private_key=key))
    with pytest.raises(CredentialsError, match="give both"):
        load_signing_identity(CredentialsOptions(folder=tmp_path / "x", cert_chain=chain))
    stranger = load_signing_identity(CredentialsOptions(folder=tmp_path / "stranger"))
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(stranger.private_key_pem)
    other_key.chmod(0o600)
    with pytest.raises(CredentialsError, match="does not belong"):
        load_signing_identity(CredentialsOptions(folder=tmp_path / "x", cert_chain=chain, private_key=other_key))


def test_disabled_credentials_publish_unsigned(studio_settings) -> None:
    settings = studio_settings.model_copy(
        update={"credentials": studio_settings.credentials.model_copy(update={"enabled": False})}
    )
    with Studio.open(settings) as studio:
        studio.start_chain()
        made = drafts.create_draft(studio, prompt="a pond", seed=2, width=64, height=64)
        minted = minting.mint_draft(studio, made.draft.id, name="Pond", recipient=RECIPIENT)
        assert minted.published.image_cid == made.draft.image_cid
        assert read_credentials(studio.store.cat(minted.published.image_cid)).state == "missing"
        assert not settings.credentials_dir.exists()


def test_an_existing_collection_document_is_kept_and_extended(studio: Studio) -> None:
    from metadata.collection import build_collection_metadata, validate_collection_metadata
    from studio.services.publishing import pin_content

    made = drafts.create_draft(studio, prompt="a bay", seed=4, width=64, height=64)
    document = build_collection_metadata(
        name="Bays", description="Tides, forever.", image_cid=made.draft.image_cid, external_link="https://bays.example"
    )
    cid = pin_content(studio, validate_collection_metadata(document), name="c.json", content_type="application/json")
    studio.chain.client.set_contract_uri(f"ipfs://{cid}")
    publish_trust_anchor(studio)  # as at the next start
    updated = json.loads(studio.store.cat(studio.chain.client.contract_uri().removeprefix("ipfs://")))
    assert {k: v for k, v in updated.items() if k != "content_credentials"} == document
    assert updated["content_credentials"]["trust_anchor"].startswith("ipfs://")

    # A contractURI whose document the studio does not hold is never replaced.
    studio.chain.client.set_contract_uri("ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    assert publish_trust_anchor(studio) is not None  # the CA is still pinned
    assert studio.chain.client.contract_uri() == "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
