"""Mint intents across lost answers and other processes: an intent is dropped only when nothing can
mint its token any more (its transaction failed, or another transaction took its nonce)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from contracts.errors import ChainError
from studio.records import MintIntent, Token
from studio.services import drafts, minting
from studio.services.studio import Studio
from tests.fixtures.http import FlakyProxy

RECIPIENT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil account 2


def intents(studio: Studio) -> list[MintIntent]:
    with studio.db.session() as session:
        return list(session.scalars(select(MintIntent)))


def tokens(studio: Studio) -> list[tuple[int, str, str, str | None]]:
    """(token id, name, metadata CID, mint transaction) of each recorded token."""
    with studio.db.session() as session:
        return [
            (t.token_id, t.name, t.current_metadata_cid, t.versions[0].tx_hash) for t in session.scalars(select(Token))
        ]


def mint(studio: Studio, seed: int) -> minting.MintOutcome:
    draft = drafts.create_draft(studio, prompt=f"tide {seed}", seed=seed, width=64, height=64).draft
    return minting.mint_draft(studio, draft.id, name=f"Tide {seed}", recipient=RECIPIENT)


@pytest.mark.parametrize("lost", ["after", "before"])
def test_a_lost_answer_to_the_mint_keeps_the_intent_until_its_fate_is_known(studio_settings, lost: str) -> None:
    proxy = FlakyProxy(studio_settings.chain.rpc_url)
    try:
        via_proxy = studio_settings.model_copy(
            update={"chain": studio_settings.chain.model_copy(update={"rpc_url": proxy.url})}
        )
        with Studio.open(via_proxy) as studio:
            studio.start_chain()  # deployed through the proxy while it is up
            minting.reconcile_mints(studio)
            proxy.drop_on = ("eth_sendRawTransaction", lost)  # the answer (or the request) is lost
            with pytest.raises(ChainError):
                mint(studio, 1)
            (intent,) = intents(studio)
            assert intent.tx_hash is not None  # recorded before the transaction left
            assert intent.nonce is not None
    finally:
        proxy.close()

    with Studio.open(studio_settings) as studio:  # the next start reconciles
        studio.start_chain()
        minting.reconcile_mints(studio)  # the start-up step that records the mints
        if lost == "after":
            # It was mined: the token is recorded, as a normal mint.
            assert intents(studio) == []
            (token,) = tokens(studio)
            assert token[2:] == (intent.metadata_cid, intent.tx_hash)
            return
        # Never reached the node, but nobody can know that yet: it stays...
        assert [i.metadata_cid for i in intents(studio)] == [intent.metadata_cid]
        assert tokens(studio) == []
        # ...until another transaction takes its nonce: then it can never be mined, and is dropped.
        mint(studio, 2)
        assert minting.reconcile_mints(studio) == []
        assert intents(studio) == []
        assert [t[1] for t in tokens(studio)] == ["Tide 2"]


def test_another_process_reconciling_leaves_a_mint_in_flight_alone(studio_settings) -> None:
    """Two studios on one database (each with its own engine, as two processes have): the second
    opens its chain, which reconciles mints, while the first one's mint waits to be mined."""
    first = Studio.open(studio_settings)
    first.start_chain()
    minting.reconcile_mints(first)
    w3 = first.chain.w3
    sender = first.chain.address
    outcome: list[object] = []
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        draft = drafts.create_draft(first, prompt="in flight", seed=3, width=64, height=64).draft

        def mint_in_first() -> None:
            try:
                outcome.append(minting.mint_draft(first, draft.id, name="In flight", recipient=RECIPIENT))
            except Exception as exc:
                outcome.append(exc)

        minting_thread = threading.Thread(target=mint_in_first)
        minting_thread.start()
        deadline = time.monotonic() + 60
        while w3.eth.get_transaction_count(sender, "pending") == w3.eth.get_transaction_count(sender, "latest"):
            assert time.monotonic() < deadline, "the mint was never sent"
            assert minting_thread.is_alive(), outcome
            time.sleep(0.05)

        with Studio.open(studio_settings) as second:
            second.start_chain()
            minting.reconcile_mints(second)  # the start-up step that reconciles the mints
            assert len(intents(second)) == 1  # still in flight: kept

        w3.provider.make_request("evm_mine", [])
        minting_thread.join(timeout=120)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    try:
        assert len(outcome) == 1
        assert isinstance(outcome[0], minting.MintOutcome), outcome
        (token,) = tokens(first)
        assert token[0] == outcome[0].token_id
        assert intents(first) == []
    finally:
        first.close()
