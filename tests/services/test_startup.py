"""The studio's start-up is explicit: opening it touches no chain, and the chain is used only after
`start_chain()`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from studio.records import Deployment
from studio.services import tokens
from studio.services.studio import ChainNotStartedError, Studio


def test_opening_the_studio_starts_no_chain_and_using_it_before_start_up_names_the_step(studio_settings) -> None:
    with Studio.open(studio_settings) as studio:
        with pytest.raises(ChainNotStartedError, match=r"studio\.start_chain\(\)"):
            studio.chain  # noqa: B018 - reading it must not start anything
        with pytest.raises(ChainNotStartedError):
            tokens.list_tokens(studio)
        assert not studio.chain_started
        with studio.db.session() as session:
            assert session.scalars(select(Deployment)).all() == []  # nothing deployed

        session_ = studio.start_chain()
        assert studio.start_chain() is session_  # started once
        assert studio.identity.contract_address == session_.contract_address
        assert studio.identity.chain_id == studio_settings.chain.chain_id
        assert tokens.list_tokens(studio) == []
