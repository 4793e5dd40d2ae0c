"""A studio killed between its contract's deployment and recording it deploys no second contract."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from studio.records import Deployment
from studio.services.chain import create_address, open_chain
from tests.fixtures.paths import REPO_ROOT

OPEN_IN_CHILD = """
from studio.config import load_settings
from studio.db import open_database
from studio.services.chain import open_chain
open_chain(load_settings(), open_database(load_settings()))
"""


def test_deploy_killed_before_its_record_is_found_again(chain_settings, db, funded_account, chain_w3) -> None:
    chain = chain_settings.chain
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "STUDIO_DATA_DIR": str(chain_settings.data_dir),
        "STUDIO_CHAIN__NETWORK": "rpc",
        "STUDIO_CHAIN__RPC_URL": chain.rpc_url,
        "STUDIO_CHAIN__CHAIN_ID": str(chain.chain_id),
        "STUDIO_CHAIN__PRIVATE_KEY": chain.private_key.get_secret_value(),
        "STUDIO_CRASH_AT": "chain:after_deploy",
    }
    child = subprocess.run([sys.executable, "-c", OPEN_IN_CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr  # killed after the deploy was mined, before it was recorded

    deployed = create_address(funded_account.address, 0)  # the account's first transaction was the deploy
    assert chain_w3.eth.get_code(deployed) != b""
    with db.session() as session:
        (row,) = session.scalars(select(Deployment)).all()
        recorded_hash = row.tx_hash  # written before sending, with the signed transaction's hash
        assert (row.address, row.block_number) == (deployed, None)
    receipt = chain_w3.eth.get_transaction_receipt(recorded_hash)
    assert receipt["contractAddress"] == deployed

    session = open_chain(chain_settings, db)
    assert session.contract_address == deployed  # found again, not deployed twice
    assert session.client.has_role("MINTER_ROLE", funded_account.address)  # the set-up it missed is done
    assert session.client.has_role("EVOLVER_ROLE", funded_account.address)
    assert session.client.from_block == receipt["blockNumber"] > 0  # history is read from the deploy on
    with db.session() as session_db:
        (row,) = session_db.scalars(select(Deployment)).all()
        assert (row.address, row.tx_hash, row.block_number) == (deployed, recorded_hash, receipt["blockNumber"])
    assert open_chain(chain_settings, db).contract_address == deployed


@pytest.mark.parametrize(
    "signed_hash",
    [None, "0x" + "ab" * 32],  # died before signing; signed and recorded, died before it left
)
def test_a_deploy_that_never_happened_is_retried(chain_settings, db, funded_account, chain_w3, signed_hash) -> None:
    """Recorded before sending, then the studio died before the transaction left: deploy on the next start."""
    expected = create_address(funded_account.address, 0)
    with db.session() as session:
        session.add(
            Deployment(
                chain_id=chain_settings.chain.chain_id,
                address=expected,
                deployer=funded_account.address,
                tx_hash=signed_hash,
            )
        )
    session = open_chain(chain_settings, db)
    assert session.contract_address == create_address(funded_account.address, 0)
    assert chain_w3.eth.get_code(session.contract_address) != b""
    with db.session() as session_db:
        (row,) = session_db.scalars(select(Deployment)).all()
        assert row.tx_hash not in (None, signed_hash)
        assert row.block_number == chain_w3.eth.get_transaction_receipt(row.tx_hash)["blockNumber"]
