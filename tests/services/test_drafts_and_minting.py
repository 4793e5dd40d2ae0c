"""Drafts and minting through the services the UI calls, on real anvil, SQLite and the local IPFS store."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from sqlalchemy import func, select

from metadata.cid import cid_for_bytes
from metadata.errors import PinningError
from metadata.png import read_png_metadata
from studio.records import Draft, Pin, Token, TokenVersion
from studio.services import drafts, minting
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.startup import start_studio
from studio.services.studio import Studio

RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1


def count(studio: Studio, model) -> int:
    with studio.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_draft_is_stored_with_resolved_parameters(studio: Studio) -> None:
    made = drafts.create_draft(studio, prompt="a lighthouse in a storm", seed=7, width=64, height=64)
    draft = made.draft
    assert draft.image_cid == cid_for_bytes(made.png)
    assert studio.store.cat(draft.image_cid) == made.png
    assert (draft.seed, draft.width, draft.height) == (7, 64, 64)
    assert draft.steps == draft.provenance["steps"] >= 1
    parameters, provenance = read_png_metadata(drafts.draft_png(studio, draft.id))
    assert parameters.startswith("a lighthouse in a storm")
    assert "Seed: 7" in parameters
    assert provenance["generation"]["seed"] == 7
    assert [d.id for d in drafts.list_drafts(studio)] == [draft.id]


def test_variation_is_img2img_from_the_parent(studio: Studio) -> None:
    parent = drafts.create_draft(studio, prompt="a red fox", seed=3, width=64, height=64).draft
    child = drafts.create_variation(studio, parent.id, strength=0.5).draft
    assert child.parent_id == parent.id
    assert child.strength == 0.5
    assert child.seed == parent.seed
    assert child.provenance["init_image"] == f"ipfs://{parent.image_cid}"
    assert child.provenance["pipeline"].endswith("Img2ImgPipeline")
    assert child.image_cid != parent.image_cid
    with pytest.raises(NotFoundError, match="Draft 999"):
        drafts.create_variation(studio, 999, strength=0.5)


def test_mint_pins_then_mints_then_records(studio: Studio) -> None:
    draft = drafts.create_draft(studio, prompt="a quiet harbour", seed=11, width=64, height=64).draft
    steps: list[tuple[str, dict]] = []
    outcome = minting.mint_draft(
        studio,
        draft.id,
        name="Harbour",
        description="Changes with the weather.",
        attributes=[{"trait_type": "Mood", "value": "calm"}],
        recipient=RECIPIENT.lower(),
        on_step=lambda step, details: steps.append((step, details)),
    )
    assert [s for s, _ in steps] == ["pin image", "pin metadata", "CID check", "transaction", "confirmation"]
    client = studio.chain.client
    assert client.owner_of(outcome.token_id) == RECIPIENT
    assert client.token_uri(outcome.token_id) == f"ipfs://{outcome.published.metadata_cid}"

    # What a marketplace reads: tokenURI -> metadata -> image, all from IPFS content.
    metadata = json.loads(studio.store.cat(outcome.published.metadata_cid))
    assert metadata["name"] == "Harbour"
    # The published image is the draft signed with Content Credentials (the draft itself stays unsigned).
    assert metadata["image"] == f"ipfs://{outcome.published.image_cid}" != f"ipfs://{draft.image_cid}"
    assert {"trait_type": "Mood", "value": "calm"} in metadata["attributes"]
    assert metadata["provenance"]["version"] == 0
    assert metadata["provenance"]["previous"] is None
    assert metadata["provenance"]["generation"]["seed"] == 11
    image = Image.open(io.BytesIO(studio.store.cat(draft.image_cid)))
    assert image.size == (64, 64)

    with studio.db.session() as session:
        token = session.scalar(select(Token))
        assert (token.token_id, token.current_version, token.living) == (outcome.token_id, 0, False)
        assert token.current_metadata_cid == outcome.published.metadata_cid
        version = session.scalar(select(TokenVersion))
        assert version.tx_hash == outcome.tx_hash
        assert version.gas_used == outcome.gas_used > 0
        pinned = set(session.scalars(select(Pin.cid)))
    # The image and metadata, and the collection's Content Credentials CA with the metadata naming it.
    contract_uri = client.contract_uri()
    collection = json.loads(studio.store.cat(contract_uri.removeprefix("ipfs://")))
    ca_cid = collection["content_credentials"]["trust_anchor"].removeprefix("ipfs://")
    assert pinned == {outcome.published.image_cid, outcome.published.metadata_cid, ca_cid, contract_uri[7:]}


ARTIST = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def test_per_token_royalty_pays_the_receiver_named_not_the_recipient(studio: Studio) -> None:
    draft = drafts.create_draft(studio, prompt="dunes", seed=5, width=64, height=64).draft
    steps: list[tuple[str, dict]] = []
    outcome = minting.mint_draft(
        studio,
        draft.id,
        name="Dunes",
        recipient=RECIPIENT,
        royalty_bps=1000,
        royalty_receiver=ARTIST.lower(),
        on_step=lambda step, details: steps.append((step, details)),
    )
    client = studio.chain.client
    assert client.owner_of(outcome.token_id) == RECIPIENT
    assert client.royalty_info(outcome.token_id, 10_000) == (ARTIST, 1000)
    assert ("royalty", {"token_id": outcome.token_id, "royalty_bps": 1000, "receiver": ARTIST}) in steps
    # A receiver at the collection's default rate is still this token's own royalty.
    again = drafts.create_draft(studio, prompt="dunes", seed=6, width=64, height=64).draft
    second = minting.mint_draft(studio, again.id, name="Dunes II", recipient=RECIPIENT, royalty_receiver=ARTIST)
    assert client.royalty_info(second.token_id, 10_000) == (ARTIST, studio.settings.chain.royalty_bps)


def test_a_custom_royalty_without_a_receiver_is_refused_before_anything_is_sent(studio: Studio) -> None:
    draft = drafts.create_draft(studio, prompt="dunes", seed=5, width=64, height=64).draft
    supply = studio.chain.client.total_supply()
    pins = count(studio, Pin)  # the Content Credentials CA and the collection document, pinned at chain start
    with pytest.raises(InvalidInputError, match="needs a royalty receiver"):
        minting.mint_draft(studio, draft.id, name="Dunes", recipient=RECIPIENT, royalty_bps=1000)
    with pytest.raises(InvalidInputError, match="Royalty receiver '0xnope' is not an Ethereum address"):
        minting.mint_draft(
            studio, draft.id, name="Dunes", recipient=RECIPIENT, royalty_bps=1000, royalty_receiver="0xnope"
        )
    assert studio.chain.client.total_supply() == supply
    assert count(studio, Pin) == pins
    assert count(studio, Token) == 0
    # The collection's default rate needs no receiver: the collection's default receiver is paid.
    outcome = minting.mint_draft(
        studio, draft.id, name="Dunes", recipient=RECIPIENT, royalty_bps=studio.settings.chain.royalty_bps
    )
    receiver, _amount = studio.chain.client.royalty_info(outcome.token_id, 10_000)
    assert receiver == studio.chain.address


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"recipient": "0x1234"}, InvalidInputError, "not an Ethereum address"),
        ({"recipient": "0x" + "0" * 40}, InvalidInputError, "zero address"),
        ({"name": "  "}, InvalidInputError, "needs a name"),
        ({"royalty_bps": 20_000}, InvalidInputError, "0 to 10000"),
        ({"attributes": [{"trait_type": "Mood", "value": ""}]}, InvalidInputError, "Attribute 1"),
        ({"living": True}, InvalidInputError, "needs a rules file"),
        ({"living": True, "rules_name": "../etc/passwd"}, InvalidInputError, "not valid"),
        ({"living": True, "rules_name": "nowhere"}, NotFoundError, "nowhere.toml"),
        ({"draft_id": 4242}, NotFoundError, "Draft 4242"),
    ],
)
def test_bad_mint_input_is_refused_before_anything_is_pinned(studio: Studio, overrides, error, message) -> None:
    draft = drafts.create_draft(studio, prompt="rain", seed=1, width=64, height=64).draft
    pins = count(studio, Pin)  # the Content Credentials CA and the collection document, pinned at start-up
    arguments = {"draft_id": draft.id, "name": "Rain", "recipient": RECIPIENT, **overrides}
    draft_id = arguments.pop("draft_id")
    with pytest.raises(error, match=message):
        minting.mint_draft(studio, draft_id, **arguments)
    assert count(studio, Pin) == pins
    assert count(studio, Token) == 0


def test_pinning_outage_mints_nothing_and_keeps_the_draft(studio_settings, pinata_standin) -> None:
    settings = studio_settings.model_copy(
        update={
            "ipfs": studio_settings.ipfs.model_copy(
                update={
                    "backends": ["local", "pinata"],
                    "pinata_jwt": pinata_standin.jwt,
                    "pinata_api_url": pinata_standin.url,
                    "pinata_files_api_url": pinata_standin.url,
                    "retries": 1,
                }
            )
        }
    )
    from pydantic import SecretStr

    settings.ipfs.pinata_jwt = SecretStr(pinata_standin.jwt)
    with Studio.open(settings) as studio:
        start_studio(studio)  # its Content Credentials CA pinned before the outage begins
        draft = drafts.create_draft(studio, prompt="storm", seed=2, width=64, height=64).draft
        pinata_standin.fail_next(503, times=2)  # both attempts (retries=1) of the image pin
        with pytest.raises(PinningError):
            minting.mint_draft(studio, draft.id, name="Storm", recipient=RECIPIENT)
        assert studio.chain.client.total_supply() == 0
        assert count(studio, Token) == 0
        assert drafts.get_draft(studio, draft.id).image_cid == draft.image_cid

        # The outage ends: the same draft mints.
        outcome = minting.mint_draft(studio, draft.id, name="Storm", recipient=RECIPIENT)
        assert studio.chain.client.token_uri(outcome.token_id) == f"ipfs://{outcome.published.metadata_cid}"
        with studio.db.session() as session:
            backends = set(session.scalars(select(Pin.backend).where(Pin.cid == outcome.published.metadata_cid)))
        assert backends == {"local", "pinata"}


def test_drafts_survive_a_restart(studio_settings) -> None:
    with Studio.open(studio_settings) as studio:
        made = drafts.create_draft(studio, prompt="moss", seed=9, width=64, height=64)
    with Studio.open(studio_settings) as studio:
        (draft,) = drafts.list_drafts(studio)
        assert drafts.draft_png(studio, draft.id) == made.png
        assert isinstance(draft, Draft)
