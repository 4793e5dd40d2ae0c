"""Generative collections through the service the UI and CLI call: real SQLite, the tiny model, real anvil."""

from __future__ import annotations

import io
import json
import threading

import pytest
from PIL import Image
from sqlalchemy import func, select

from metadata.credentials import read_credentials
from metadata.ipfs_reader import split_ipfs_uri
from studio.collections.spec import CollectionSpecError, edition_seed
from studio.records import CollectionEdition, Draft, Token
from studio.services import collections
from studio.services.errors import InvalidInputError
from studio.services.studio import Studio

RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1

SPEC = """\
name = "harbours"
title = "Harbours"
description = "Harbours at dusk"
editions = 6
base_seed = 1234
prompt = "a {boat} in a {weather} harbour"
width = 64
height = 64

[traits.boat]
trait_type = "Boat"
[traits.boat.values]
sailboat = 60
trawler = 30
galleon = 10

[traits.weather.values]
fog = 1
sun = 1
"""


def count(studio: Studio, model) -> int:
    with studio.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_generates_every_edition_as_a_draft_with_progress(studio: Studio) -> None:
    seen: list[collections.Progress] = []
    result = collections.generate_collection(studio, SPEC, on_progress=seen.append)
    assert (result.made, result.generated, result.total, result.stopped) == ([1, 2, 3, 4, 5, 6], 6, 6, False)
    assert [(p.done, p.total) for p in seen] == [(0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    assert seen[0].eta_s is None
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in seen[1:])
    assert seen[-1].eta_s == 0

    view = collections.get_collection(studio, "harbours")
    combos = {tuple(e.traits.values()) for e in view.editions}
    assert len(combos) == 6  # 3 x 2 combinations: all different
    with studio.db.session() as session:
        for edition in view.editions:
            draft = session.get(Draft, edition.draft_id)
            assert draft.prompt == f"a {edition.traits['boat']} in a {edition.traits['weather']} harbour"
            assert draft.seed == edition.seed == 1234 + edition.number - 1
            assert (draft.width, draft.height) == (64, 64)
            assert edition.image_cid == draft.image_cid

    rows = collections.rarity(studio, "harbours")
    weather = {r.value: r for r in rows if r.trait == "weather"}
    assert (weather["fog"].count, weather["sun"].count) == (3, 3)
    assert weather["fog"].share == 0.5

    # Generating the same spec again makes nothing: every edition exists.
    again = collections.generate_collection(studio, SPEC)
    assert (again.made, again.generated) == ([], 6)
    assert count(studio, Draft) == 6


def test_a_stopped_run_keeps_what_it_made_and_resumes(studio: Studio) -> None:
    stop = threading.Event()

    def stop_after_two(progress: collections.Progress) -> None:
        if progress.done == 2:
            stop.set()

    first = collections.generate_collection(studio, SPEC, on_progress=stop_after_two, cancel=stop)
    assert (first.made, first.stopped, first.generated) == ([1, 2], True, 2)
    view = collections.get_collection(studio, "harbours")
    assert [e.draft_id is not None for e in view.editions] == [True, True, False, False, False, False]

    second = collections.resume_collection(studio, "harbours")
    assert (second.made, second.stopped, second.generated) == ([3, 4, 5, 6], False, 6)
    assert count(studio, Draft) == 6  # nothing made twice


def test_the_same_seed_gives_the_same_image_in_a_resumed_run(studio: Studio) -> None:
    collections.generate_collection(studio, SPEC)
    before = {e.number: e.image_cid for e in collections.get_collection(studio, "harbours").editions}
    spec_b = SPEC.replace('name = "harbours"', 'name = "harbours-b"')
    collections.generate_collection(studio, spec_b)
    after = {e.number: e.image_cid for e in collections.get_collection(studio, "harbours-b").editions}
    assert before == after


def test_regenerate_and_exclude_one_edition(studio: Studio) -> None:
    collections.generate_collection(studio, SPEC)
    old = collections.get_collection(studio, "harbours").editions[2]
    new = collections.regenerate_edition(studio, "harbours", 3)
    assert new.traits == old.traits
    assert new.seed == edition_seed(1234, 3, 1) != old.seed
    assert new.draft_id != old.draft_id
    assert new.image_cid != old.image_cid
    assert collections.regenerate_edition(studio, "harbours", 3).seed == edition_seed(1234, 3, 2)

    excluded = collections.set_excluded(studio, "harbours", 2)
    assert excluded.excluded
    view = collections.get_collection(studio, "harbours")
    assert [e.number for e in view.included] == [1, 3, 4, 5, 6]
    assert sum(r.count for r in collections.rarity(studio, "harbours") if r.trait == "boat") == 5
    assert not collections.set_excluded(studio, "harbours", 2, excluded=False).excluded


def test_another_spec_under_a_generated_name_is_refused(studio: Studio) -> None:
    stop = threading.Event()
    stop.set()
    collections.generate_collection(studio, SPEC, cancel=stop)  # opened, nothing generated
    changed = SPEC.replace("base_seed = 1234", "base_seed = 7")
    collections.open_collection(studio, changed)  # nothing generated yet: the new spec replaces it
    assert collections.get_collection(studio, "harbours").editions[0].seed == 7
    collections.generate_collection(studio, changed)
    with pytest.raises(InvalidInputError, match="already exists with another spec"):
        collections.open_collection(studio, SPEC)
    with pytest.raises(CollectionSpecError, match="editions"):
        collections.open_collection(studio, SPEC.replace("editions = 6", "editions = -1"), source="bad.toml")
    with studio.db.session() as session:
        assert session.scalar(select(func.count()).select_from(CollectionEdition)) == 6


def test_mint_publishes_collection_metadata_and_attributes_once(studio: Studio) -> None:
    collections.generate_collection(studio, SPEC)
    collections.set_excluded(studio, "harbours", 6)
    with pytest.raises(InvalidInputError, match="not an Ethereum address"):
        collections.mint_collection(studio, "harbours", recipient="nobody")
    progress: list[collections.Progress] = []
    result = collections.mint_collection(studio, "harbours", recipient=RECIPIENT, on_progress=progress.append)
    assert sorted(result.minted) == [1, 2, 3, 4, 5]
    assert progress[-1].done == progress[-1].total == 5
    client = studio.chain.client

    collection_doc = json.loads(studio.store.cat(result.metadata_cid))
    assert client.contract_uri() == f"ipfs://{result.metadata_cid}"
    assert collection_doc["name"] == "Harbours"
    assert collection_doc["description"] == "Harbours at dusk"
    assert collection_doc["seller_fee_basis_points"] == studio.settings.chain.royalty_bps
    assert collection_doc["fee_recipient"] == studio.chain.address

    view = collections.get_collection(studio, "harbours")
    for edition in view.included:
        token_id = result.minted[edition.number]
        assert edition.token_id == token_id
        assert client.owner_of(token_id) == RECIPIENT
        folder, path = split_ipfs_uri(client.token_uri(token_id))  # a static collection mints as a drop
        assert path == f"{token_id}.json"
        metadata = json.loads(studio.store.cat(folder, path))
        assert metadata["name"] == f"Harbours #{edition.number}"
        assert metadata["attributes"] == [
            {"trait_type": "Boat", "value": edition.traits["boat"]},
            {"trait_type": "weather", "value": edition.traits["weather"]},
        ]
        # The edition's draft, published with Content Credentials under the CA the collection names.
        published = studio.store.cat(metadata["image"].removeprefix("ipfs://"))
        assert (
            Image.open(io.BytesIO(published)).tobytes()
            == Image.open(io.BytesIO(studio.store.cat(edition.image_cid))).tobytes()
        )
        ca_cid = collection_doc["content_credentials"]["trust_anchor"].removeprefix("ipfs://")
        assert read_credentials(published, studio.store.cat(ca_cid)).state == "trusted"
    assert view.editions[5].token_id is None

    again = collections.mint_collection(studio, "harbours", recipient=RECIPIENT)
    assert again.minted == {}
    assert sorted(again.already_minted) == [1, 2, 3, 4, 5]
    assert count(studio, Token) == 5
    with pytest.raises(InvalidInputError, match="minted as token"):
        collections.regenerate_edition(studio, "harbours", 1)


def test_mint_refuses_editions_not_generated(studio: Studio) -> None:
    stop = threading.Event()
    collections.generate_collection(studio, SPEC, on_progress=lambda p: p.done == 3 and stop.set(), cancel=stop)
    with pytest.raises(InvalidInputError, match="3 editions not generated yet"):
        collections.mint_collection(studio, "harbours", recipient=RECIPIENT)
    assert count(studio, Token) == 0
