"""A studio killed between the chain confirming a mint and recording it loses no token."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from studio.records import MintIntent, Token
from studio.services import drafts
from studio.services.minting import reconcile_mints
from studio.services.studio import Studio
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.processes import settings_env

RECIPIENT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil account 2

MINT_IN_CHILD = """
import sys
from studio.services.minting import mint_draft
from studio.services.studio import Studio
with Studio.open() as studio:
    studio.start_chain()
    mint_draft(studio, int(sys.argv[1]), name="Tide", description="Kept", recipient=sys.argv[2])
"""


def test_mint_killed_after_confirmation_is_recorded_on_next_start(studio_settings) -> None:
    with Studio.open(studio_settings) as studio:
        draft = drafts.create_draft(studio, prompt="tide pools", seed=4, width=64, height=64).draft

    env = {
        **os.environ,
        **settings_env(studio_settings),
        "PYTHONPATH": str(REPO_ROOT),
        "STUDIO_CRASH_AT": "mint:after_confirmation",
    }
    child = subprocess.run(
        [sys.executable, "-c", MINT_IN_CHILD, str(draft.id), RECIPIENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr  # SIGKILLed at the crash point, after the chain confirmed

    with Studio.open(studio_settings) as studio:
        with studio.db.session() as session:  # the child recorded its intent, not the token
            assert session.scalars(select(Token)).all() == []
            (intent,) = session.scalars(select(MintIntent)).all()
        studio.start_chain()
        reconcile_mints(studio)  # the start-up step records the mint
        client = studio.chain.client
        assert client.total_supply() == 1
        with studio.db.session() as session:
            token = session.scalar(select(Token))
            versions = [(v.version, v.tx_hash) for v in token.versions]
            assert session.scalars(select(MintIntent)).all() == []
        assert (token.token_id, token.name, token.description, token.seed) == (1, "Tide", "Kept", 4)
        assert token.current_metadata_cid == intent.metadata_cid == client.metadata_cid(1)
        assert client.owner_of(1) == RECIPIENT
        assert versions == [(0, client.history(1)[0].tx_hash)]

    with Studio.open(studio_settings) as studio:  # a later start has nothing left to reconcile
        studio.start_chain()
        assert reconcile_mints(studio) == []
        with studio.db.session() as session:
            assert len(session.scalars(select(Token)).all()) == 1
