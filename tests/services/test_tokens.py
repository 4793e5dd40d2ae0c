"""A token's life after the mint: new versions, its timeline, the animation, freezing."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from contracts.errors import ChainError
from studio.services import drafts, minting, tokens
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.publishing import PublishedVersion, pin_content, publish_version
from studio.services.studio import Studio

RECIPIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # anvil account 3


def mint_and_evolve(studio: Studio) -> tuple[int, str, str]:
    draft = drafts.create_draft(studio, prompt="a meadow", seed=21, width=64, height=64).draft
    minted = minting.mint_draft(studio, draft.id, name="Meadow", recipient=RECIPIENT)
    evolved = drafts.create_variation(studio, draft.id, strength=0.6, prompt="a meadow in snow")
    snapshot_cid = pin_content(
        studio, json.dumps({"temperature": -4}).encode(), name="snapshot.json", content_type="application/json"
    )
    published = publish_version(
        studio,
        name="Meadow",
        description="",
        attributes=[{"trait_type": "Season", "value": "winter"}],
        image_png=evolved.png,
        generation_record=evolved.draft.provenance,
        version=1,
        previous_metadata_cid=minted.published.metadata_cid,
        feed_snapshot_cid=snapshot_cid,
    )
    sent = studio.chain.client.evolve(minted.token_id, published.metadata_cid, 0)
    tokens.record_version(
        studio,
        minted.token_id,
        published,
        version=1,
        tx_hash=sent.tx_hash,
        block_number=sent.block_number,
        gas_used=sent.gas_used,
        state={"season": "winter"},
        feed_snapshot_cid=snapshot_cid,
    )
    return minted.token_id, minted.published.metadata_cid, published.metadata_cid


def test_timeline_chains_versions_and_shows_their_causes(studio: Studio) -> None:
    token_id, first_cid, second_cid = mint_and_evolve(studio)
    views = tokens.timeline(studio, token_id)
    assert [v.version for v in views] == [0, 1]
    assert views[1].previous_metadata_cid == first_cid
    assert views[1].metadata_cid == second_cid
    assert views[1].feed_values == {"temperature": -4}
    assert views[1].state == {"season": "winter"}
    assert views[0].feed_values is None
    # The chain agrees: its events are the same history.
    history = studio.chain.client.history(token_id)
    assert [(h.version, h.metadata_cid) for h in history] == [(0, first_cid), (1, second_cid)]
    # And the metadata itself links back to genesis.
    metadata = json.loads(studio.store.cat(second_cid))
    assert metadata["provenance"]["previous"] == f"ipfs://{first_cid}"
    (token,) = tokens.list_tokens(studio)
    assert (token.current_version, token.current_metadata_cid) == (1, second_cid)


def test_recording_a_version_twice_is_idempotent_and_a_conflict_is_refused(studio: Studio) -> None:
    token_id, _, second_cid = mint_and_evolve(studio)
    again = tokens.record_version(
        studio,
        token_id,
        PublishedVersion(image_cid="x", metadata_cid=second_cid, metadata={}, metadata_bytes=b""),
        version=1,
        tx_hash=None,
        block_number=None,
        gas_used=None,
    )
    assert again.metadata_cid == second_cid
    assert [v.version for v in tokens.timeline(studio, token_id)] == [0, 1]
    with pytest.raises(InvalidInputError, match="already has a version 1"):
        tokens.record_version(
            studio,
            token_id,
            PublishedVersion(image_cid="x", metadata_cid="bafkreiother", metadata={}, metadata_bytes=b""),
            version=1,
            tx_hash=None,
            block_number=None,
            gas_used=None,
        )


def test_animation_has_one_frame_per_version(studio: Studio) -> None:
    token_id, _, _ = mint_and_evolve(studio)
    gif = Image.open(io.BytesIO(tokens.evolution_animation(studio, token_id)))
    assert gif.format == "GIF"
    assert gif.n_frames == 2


def test_freeze_is_permanent(studio: Studio) -> None:
    token_id, _, _ = mint_and_evolve(studio)
    tokens.freeze_token(studio, token_id)
    assert studio.chain.client.is_frozen(token_id)
    assert tokens.get_token(studio, token_id).frozen
    with pytest.raises(InvalidInputError, match="already frozen"):
        tokens.freeze_token(studio, token_id)
    with pytest.raises(ChainError, match="TokenFrozen"):
        studio.chain.client.evolve(token_id, studio.chain.client.metadata_cid(token_id), 1)


def test_unknown_token_says_where_to_look(studio: Studio) -> None:
    with pytest.raises(NotFoundError, match="Token 77"):
        tokens.timeline(studio, 77)
