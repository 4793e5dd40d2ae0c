"""`python -m evolve status` counts the configured deployment's tokens only, as the cycle does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.client import LivingNFTClient
from contracts.signer import Signer
from tests.fixtures.evolve import mint_living, weather_rules
from tests.fixtures.processes import evolve_cli, process_env

pytestmark = pytest.mark.slow


def test_status_counts_only_the_configured_deployments_living_tokens(
    open_studio, evolve_settings, weather_api, chain_w3, tmp_path: Path
) -> None:
    # Deployment A: the contract the studio deploys on its first start, with two living tokens.
    first = open_studio()
    first.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (first.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    mint_living(first, 2)
    contract_a = first.chain.contract_address

    # Deployment B in the same database: another LivingNFT on the same chain, one living token.
    key = evolve_settings.chain.private_key.get_secret_value()
    signer = Signer.from_private_key(chain_w3, key, chain_id=evolve_settings.chain.chain_id)
    other, _ = LivingNFTClient.deploy(
        signer, name="Other", symbol="OTH", royalty_receiver=signer.address, royalty_bps=0
    )
    other.grant_role("MINTER_ROLE", signer.address)
    chain_b = evolve_settings.chain.model_copy(update={"contract_address": other.address})
    second = open_studio(evolve_settings.model_copy(update={"chain": chain_b}))
    assert second.settings.data_dir == first.settings.data_dir  # one database for both
    mint_living(second, 1)

    for contract, expected in ((contract_a, 2), (other.address, 1)):
        env = process_env(evolve_settings, tmp_path, STUDIO_CHAIN__CONTRACT_ADDRESS=contract)
        shown = evolve_cli(env, "status", "--json")
        assert shown.returncode == 0, shown.stderr[-3000:]
        (entry,) = json.loads(shown.stdout)
        assert entry["collection"] == "weather"
        assert entry["living_tokens"] == expected, contract
