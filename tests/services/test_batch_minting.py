"""Minting many drafts in few transactions (studio.services.batch_minting) on real anvil, SQLite and the
local IPFS store: each token is published and recorded as a single mint would be, batches are split under
the gas budget, and a stop between a part's confirmation and its recording loses nothing and mints
nothing twice."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from sqlalchemy import func, select

from contracts.client import BatchMintError
from contracts.errors import MissingRoleError
from metadata.cid import cid_from_bytes
from metadata.credentials import read_credentials
from metadata.ipfs_reader import split_ipfs_uri
from studio.records import MintIntent, Pin, Token
from studio.services import drafts
from studio.services.batch_minting import DraftToMint, mint_drafts
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.minting import reconcile_mints
from studio.services.publishing import pin_metadata_folder
from studio.services.studio import Studio
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.processes import settings_env

RECIPIENT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil account 2
CLOCK_RULES = """\
[schedule]
every = "1h"

[feeds.clock]
type = "clock"

[traits.light]
input = "clock.part_of_day"
[[traits.light.cases]]
fragment = "soft light"
"""
# Room for only a few tokens per transaction (a drop or a living batch, with the 1.25 buffer): several parts.
SMALL_BUDGET = 200_000


def make_drafts(studio: Studio, count: int, start_seed: int = 1) -> list[DraftToMint]:
    items = []
    for seed in range(start_seed, start_seed + count):
        draft = drafts.create_draft(studio, prompt=f"dune {seed}", seed=seed, width=64, height=64).draft
        trait = {"trait_type": "Seed", "value": seed, "display_type": "number"}
        items.append(DraftToMint(draft.id, f"Dune #{seed}", "An edition", [trait]))
    return items


def recorded(studio: Studio) -> list[Token]:
    with studio.db.session() as session:
        found = list(session.scalars(select(Token).order_by(Token.token_id)))
        for token in found:
            _ = token.versions  # loaded before the session closes
        return found


def open_intents(studio: Studio) -> int:
    with studio.db.session() as session:
        return session.scalar(select(func.count()).select_from(MintIntent))


def test_drafts_are_published_minted_in_one_transaction_and_recorded_like_single_mints(studio: Studio) -> None:
    rules_dir = studio.settings.rules_dir
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "clock.toml").write_text(CLOCK_RULES)
    items = make_drafts(studio, 5)
    steps: list[str] = []

    outcome = mint_drafts(
        studio, items, recipient=RECIPIENT, rules_name="clock", on_step=lambda step, details: steps.append(step)
    )

    client = studio.chain.client
    assert len(outcome.tx_hashes) == 1
    assert [t.draft_id for t in outcome.tokens] == [i.draft_id for i in items]
    assert [t.token_id for t in outcome.tokens] == [1, 2, 3, 4, 5]
    assert steps.count("pin metadata") == 5
    assert steps[-2:] == ["transaction", "confirmation"]
    tokens = recorded(studio)
    assert [t.token_id for t in tokens] == [1, 2, 3, 4, 5]
    for token, item, minted in zip(tokens, items, outcome.tokens, strict=True):
        assert (token.name, token.living, token.rules_name, token.draft_id) == (item.name, True, "clock", item.draft_id)
        assert token.current_metadata_cid == minted.metadata_cid == client.metadata_cid(token.token_id)
        assert client.owner_of(token.token_id) == RECIPIENT
        assert [(v.version, v.tx_hash) for v in token.versions] == [(0, outcome.tx_hashes[0])]
        # Published as a single mint publishes: metadata and image pinned, provenance from the draft.
        metadata = json.loads(studio.store.cat(minted.metadata_cid))
        assert metadata["name"] == item.name
        assert metadata["image"] == f"ipfs://{minted.image_cid}"
        assert metadata["attributes"] == [{"trait_type": "Seed", "value": token.seed, "display_type": "number"}]
        draft = drafts.get_draft(studio, item.draft_id)
        # Published as a single mint publishes it: the draft's pixels, signed with Content Credentials.
        published_png = studio.store.cat(minted.image_cid)
        assert read_credentials(published_png).state in ("valid", "trusted")
        draft_pixels = Image.open(io.BytesIO(studio.store.cat(draft.image_cid))).tobytes()
        assert Image.open(io.BytesIO(published_png)).tobytes() == draft_pixels
        with studio.db.session() as session:
            pinned = set(session.scalars(select(Pin.cid)))
        assert {minted.metadata_cid, minted.image_cid} <= pinned
    assert open_intents(studio) == 0


def test_a_batch_is_split_under_the_gas_budget(studio: Studio) -> None:
    items = make_drafts(studio, 7)

    outcome = mint_drafts(studio, items, recipient=RECIPIENT, gas_budget=SMALL_BUDGET)

    assert len(outcome.tx_hashes) >= 3
    for tx_hash in outcome.tx_hashes:
        assert studio.chain.w3.eth.get_transaction(tx_hash)["gas"] <= SMALL_BUDGET
    assert [t.token_id for t in recorded(studio)] == list(range(1, 8))
    assert studio.chain.client.total_supply() == 7
    assert open_intents(studio) == 0


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"drafts": []}, InvalidInputError, "No drafts"),
        ({"duplicate": True}, InvalidInputError, "listed twice"),
        ({"unnamed": True}, InvalidInputError, "needs a token name"),
        ({"recipient": "0x1234"}, InvalidInputError, "not an Ethereum address"),
        ({"missing": True}, NotFoundError, "Draft 999"),
        ({"rules_name": "../etc/passwd"}, InvalidInputError, "not valid"),
        ({"rules_name": "nowhere"}, NotFoundError, "nowhere.toml"),
        ({"attribute": True}, InvalidInputError, "trait type and a value"),
    ],
)
def test_bad_input_is_refused_before_anything_is_pinned_or_sent(studio: Studio, change, error, message) -> None:
    items = make_drafts(studio, 2)
    if change.get("duplicate"):
        items = [items[0], items[0]]
    if change.get("unnamed"):
        items = [items[0], DraftToMint(items[1].draft_id, "  ")]
    if change.get("missing"):
        items = [items[0], DraftToMint(999, "Ghost")]
    if change.get("attribute"):
        items = [DraftToMint(items[0].draft_id, "A", attributes=[{"trait_type": "Mood"}])]
    with studio.db.session() as session:  # the Content Credentials CA and collection document, from start-up
        pins = session.scalar(select(func.count()).select_from(Pin))
    with pytest.raises(error, match=message):
        mint_drafts(
            studio,
            change.get("drafts", items),
            recipient=change.get("recipient", RECIPIENT),
            rules_name=change.get("rules_name"),
        )
    with studio.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Pin)) == pins
    assert open_intents(studio) == 0
    assert studio.chain.client.total_supply() == 0


def test_a_part_refused_after_others_were_mined_keeps_those_and_frees_the_rest(studio: Studio) -> None:
    items = make_drafts(studio, 6)
    client = studio.chain.client

    def lose_the_role_after_the_first_part(step: str, details: dict) -> None:
        if step == "confirmation" and client.total_supply() == len(details["token_ids"]):
            client.revoke_role("MINTER_ROLE", client.signer.address)

    with pytest.raises(BatchMintError) as failed:
        mint_drafts(
            studio, items, recipient=RECIPIENT, gas_budget=SMALL_BUDGET, on_step=lose_the_role_after_the_first_part
        )

    assert isinstance(failed.value.cause, MissingRoleError)
    (done,) = failed.value.done
    minted = len(done.token_ids)
    assert [t.token_id for t in recorded(studio)] == done.token_ids
    assert open_intents(studio) == 0  # the parts never sent can be minted again
    client.grant_role("MINTER_ROLE", client.signer.address)
    again = mint_drafts(studio, items[minted:], recipient=RECIPIENT)
    assert [t.draft_id for t in again.tokens] == [i.draft_id for i in items[minted:]]
    assert client.total_supply() == 6
    assert len(recorded(studio)) == 6


MINT_IN_CHILD = """
import json, sys
from studio.services.batch_minting import DraftToMint, mint_drafts
from studio.services.studio import Studio
items = [DraftToMint(int(i), f"Dune {i}") for i in json.loads(sys.argv[1])]
with Studio.open() as studio:
    studio.start_chain()
    mint_drafts(studio, items, recipient=sys.argv[2], gas_budget=int(sys.argv[3]))
"""


@pytest.mark.parametrize("point", ["batch_mint:after_confirmation", "batch_mint:after_record"])
def test_a_batch_killed_after_a_part_is_mined_loses_nothing_and_mints_nothing_twice(studio_settings, point) -> None:
    with Studio.open(studio_settings) as studio:
        items = make_drafts(studio, 6)
    ids = [item.draft_id for item in items]
    env = {**os.environ, **settings_env(studio_settings), "PYTHONPATH": str(REPO_ROOT), "STUDIO_CRASH_AT": point}
    child = subprocess.run(
        [sys.executable, "-c", MINT_IN_CHILD, json.dumps(ids), RECIPIENT, str(SMALL_BUDGET)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr  # SIGKILLed after the first part was mined

    with Studio.open(studio_settings) as studio:
        # Every draft was journaled before the first part; only `after_record` got to record its part.
        before = len(recorded(studio))
        assert before + open_intents(studio) == 6
        assert (before == 0) == (point == "batch_mint:after_confirmation")
        studio.start_chain()
        reconcile_mints(studio)  # the start-up step that records what the killed process minted
        client = studio.chain.client
        first_part = client.total_supply()
        assert 0 < first_part < 6
        tokens = recorded(studio)
        assert [t.token_id for t in tokens] == list(range(1, first_part + 1))
        assert [t.draft_id for t in tokens] == ids[:first_part]
        for token in tokens:
            mint = client.history(token.token_id)[0]  # a drop's token has no digest of its own: its MetadataSet
            assert (token.current_metadata_cid, token.versions[0].tx_hash) == (mint.metadata_cid, mint.tx_hash)
        assert open_intents(studio) == 0  # the parts never sent were dropped: their process is gone

        rest = [DraftToMint(i, f"Dune {i}") for i in ids[first_part:]]
        mint_drafts(studio, rest, recipient=RECIPIENT)
        assert client.total_supply() == 6  # nothing minted twice
        assert sorted(t.draft_id for t in recorded(studio)) == sorted(ids)


def test_static_drafts_are_minted_as_a_drop_read_from_one_pinned_folder(studio: Studio) -> None:
    """Tokens without rules go out as a drop: one folder of `<tokenId>.json` pinned, tokenURI pointing
    into it, each token's MetadataSet naming its own file, and an evolution moving it to its own URI."""
    items = make_drafts(studio, 4)
    steps: list[str] = []

    outcome = mint_drafts(studio, items, recipient=RECIPIENT, on_step=lambda step, details: steps.append(step))

    client = studio.chain.client
    assert len(outcome.tx_hashes) == 1
    assert steps[-3:] == ["metadata folder", "transaction", "confirmation"]
    folders = set()
    for token, minted in zip(recorded(studio), outcome.tokens, strict=True):
        folder, path = split_ipfs_uri(client.token_uri(token.token_id))
        folders.add(folder)
        assert path == f"{token.token_id}.json"
        # The folder's entry is the very file the token's history names.
        assert cid_from_bytes(studio.store.resolve(folder, path)) == minted.metadata_cid
        assert client.history(token.token_id)[0].metadata_cid == minted.metadata_cid == token.current_metadata_cid
        assert client.metadata_cid(token.token_id) is None  # no digest of its own until it evolves
        assert client.owner_of(token.token_id) == RECIPIENT
    (folder,) = folders
    with studio.db.session() as session:
        assert session.scalar(select(Pin.content_type).where(Pin.cid == folder)) == "inode/directory"
    assert open_intents(studio) == 0

    client.grant_role("EVOLVER_ROLE", client.signer.address)
    evolved = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    client.evolve(2, evolved, 0)
    assert client.token_uri(2) == f"ipfs://{evolved}"
    assert client.metadata_cid(2) == evolved
    assert split_ipfs_uri(client.token_uri(3)) == (folder, "3.json")  # its neighbours still read the folder


def test_a_living_batch_stores_each_digest_so_evolutions_cost_the_same(studio: Studio) -> None:
    rules_dir = studio.settings.rules_dir
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "clock.toml").write_text(CLOCK_RULES)
    items = make_drafts(studio, 2)

    outcome = mint_drafts(studio, items, recipient=RECIPIENT, rules_name="clock")

    for minted in outcome.tokens:
        assert studio.chain.client.token_uri(minted.token_id) == f"ipfs://{minted.metadata_cid}"
        assert studio.chain.client.metadata_cid(minted.token_id) == minted.metadata_cid


def test_a_metadata_file_too_large_for_one_block_is_refused_as_a_folder_entry(studio: Studio) -> None:
    """A folder entry over 256 KiB would be chunked into another CID than the token's MetadataSet names:
    refused before anything is sent, with the way out."""
    big = studio.store.add_bytes(b"{" + b" " * 300_000 + b"}")
    with pytest.raises(InvalidInputError, match="not a single raw block"):
        pin_metadata_folder(studio, {1: big})
    assert studio.chain.client.total_supply() == 0
