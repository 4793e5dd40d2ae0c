"""The lower layers' typed options, built from Settings by studio/services (contracts/ and metadata/ never read
Settings); secrets stay out of their repr."""

from __future__ import annotations

import dataclasses

from pydantic import SecretStr

from contracts.signer import TxPolicy
from metadata.pinning import PinnerOptions, create_pinner
from metadata.store import LocalStore, StoreOptions
from studio.config import ChainSettings, IpfsSettings, load_settings
from studio.services.options import pinner_options, store_options, tx_policy

JWT = "eyJhbGciOiJIUzI1NiJ9.pinata-secret-jwt"


def test_pinner_options_take_every_ipfs_setting_and_keep_the_jwt_out_of_repr():
    ipfs = IpfsSettings(
        backends=["local", "pinata", "kubo"],
        pinata_jwt=SecretStr(JWT),
        pinata_api_url="http://127.0.0.1:1/uploads",
        pinata_files_api_url="http://127.0.0.1:1/api",
        kubo_api_url="http://127.0.0.1:2",
        max_file_mb=1.5,
        connect_timeout_s=3.0,
        read_timeout_s=7.0,
        retries=2,
    )
    options = pinner_options(ipfs)

    assert options == PinnerOptions(
        backends=("local", "pinata", "kubo"),
        max_file_bytes=1_572_864,
        connect_timeout_s=3.0,
        read_timeout_s=7.0,
        retries=2,
        pinata_jwt=JWT,
        pinata_api_url="http://127.0.0.1:1/uploads",
        pinata_files_api_url="http://127.0.0.1:1/api",
        kubo_api_url="http://127.0.0.1:2",
    )
    assert JWT not in repr(options)
    assert JWT not in str(options)
    assert pinner_options(IpfsSettings()).pinata_jwt is None


def test_a_pinner_and_a_store_made_from_options(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", ipfs={"max_file_mb": 0.001})
    options = store_options(settings)
    store = LocalStore.from_options(options)
    pinner = create_pinner(pinner_options(settings.ipfs), store)

    assert options == StoreOptions(root=settings.ipfs_dir, max_file_bytes=1048)
    assert (store.root, store.max_file_bytes) == (settings.ipfs_dir, 1048)
    assert pinner.max_file_bytes == 1048
    assert [backend.name for backend in pinner.backends] == ["local"]


def test_tx_policy_takes_the_chain_settings_fee_caps_buffer_and_timeout():
    chain = ChainSettings(max_fee_gwei=33.0, priority_fee_gwei=0.5, gas_buffer=1.5, receipt_timeout_s=9.0)

    assert tx_policy(chain) == TxPolicy(max_fee_gwei=33.0, priority_fee_gwei=0.5, gas_buffer=1.5, receipt_timeout_s=9.0)
    assert {f.name for f in dataclasses.fields(TxPolicy)} == {
        "max_fee_gwei",
        "priority_fee_gwei",
        "gas_buffer",
        "receipt_timeout_s",
    }
