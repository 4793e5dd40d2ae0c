"""open_chain: signer choice, dev-key refusal, chain-id check, deploy once and reuse, keystores."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from sqlalchemy import select

from contracts.errors import ChainError, DevKeyRefusedError, SignerConfigError, WrongChainIdError
from contracts.localchain import DEV_PRIVATE_KEYS
from studio.config import load_settings
from studio.records import Deployment
from studio.services.chain import open_chain


def _settings_like(base, **chain):
    return load_settings(data_dir=base.data_dir, chain={**base.chain.model_dump(), **chain})


def test_local_session_deploys_records_and_grants_roles(settings, db, make_cid):
    session = open_chain(settings, db)
    try:
        assert session.chain_id == 31337
        assert session.address == Account.from_key(DEV_PRIVATE_KEYS[0]).address
        assert session.deployed_now
        assert session.client.has_role("MINTER_ROLE", session.address)
        assert session.client.has_role("EVOLVER_ROLE", session.address)
        with db.session() as s:
            rows = s.scalars(select(Deployment)).all()
        assert [(r.chain_id, r.address, r.deployer) for r in rows] == [
            (31337, session.contract_address, session.address)
        ]
        assert (settings.chain_dir / "state.json").exists()  # confirmed transactions are persisted
    finally:
        session.close()


def test_rpc_session_deploys_once_then_reuses(chain_settings, db, funded_account, make_cid):
    first = open_chain(chain_settings, db)
    minted = first.client.mint(funded_account.address, make_cid("rpc"))
    second = open_chain(chain_settings, db)
    assert first.address == funded_account.address
    assert second.contract_address == first.contract_address
    assert not second.deployed_now
    assert second.client.metadata_cid(minted.token_id) == make_cid("rpc")


def test_configured_contract_address_is_used_and_checked(chain_settings, db, living_nft):
    session = open_chain(_settings_like(chain_settings, contract_address=living_nft.address), db)
    assert session.contract_address == living_nft.address
    assert not session.deployed_now

    nothing_there = "0x000000000000000000000000000000000000dEaD"
    with pytest.raises(ChainError, match="no contract at"):
        open_chain(_settings_like(chain_settings, contract_address=nothing_there), db)


@pytest.mark.parametrize("dev_key", [DEV_PRIVATE_KEYS[0], DEV_PRIVATE_KEYS[9]])
def test_dev_keys_are_refused_on_any_other_chain(chain_settings, db, dev_key):
    with pytest.raises(DevKeyRefusedError) as refused:
        open_chain(_settings_like(chain_settings, private_key=dev_key), db)
    assert dev_key not in str(refused.value)  # the key itself is never shown
    assert "STUDIO_CHAIN__PRIVATE_KEY" in str(refused.value)
    with db.session() as s:
        assert s.scalars(select(Deployment)).all() == []


def test_chain_id_mismatch_refuses_before_anything_is_sent(chain_settings, db, funded_account, chain_w3):
    nonce = chain_w3.eth.get_transaction_count(funded_account.address)
    with pytest.raises(WrongChainIdError) as refused:
        open_chain(_settings_like(chain_settings, chain_id=11155111), db)
    assert "31337" in str(refused.value)
    assert "11155111" in str(refused.value)
    assert chain_w3.eth.get_transaction_count(funded_account.address) == nonce
    with db.session() as s:
        assert s.scalars(select(Deployment)).all() == []


def test_keystore_signer(chain_settings, db, funded_account, tmp_path):
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(funded_account.key, "correct horse")))
    good = _settings_like(chain_settings, private_key=None, keystore_path=keystore, keystore_password="correct horse")
    assert open_chain(good, db).address == funded_account.address

    bad = _settings_like(chain_settings, private_key=None, keystore_path=keystore, keystore_password="wrong")
    with pytest.raises(SignerConfigError, match="KEYSTORE_PASSWORD"):
        open_chain(bad, db)


def test_rpc_network_without_a_key_is_refused(chain_settings, db):
    with pytest.raises(SignerConfigError, match="STUDIO_CHAIN__PRIVATE_KEY"):
        open_chain(_settings_like(chain_settings, private_key=None), db)
