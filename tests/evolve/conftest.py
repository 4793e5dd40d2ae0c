"""Fixtures of the evolution tests.

- `evolve_anvil`: one anvil for this test module's feed tests (LocalChain, port 0, tmp state).
- `evolve_signer(index)`: a Signer for anvil dev account `index` on it.
- `deploy_aggregator(signer, decimals, answer)`: Chainlink's MockV3Aggregator, deployed from its
  committed artifact; tests read it only through AggregatorV3Interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from web3 import Web3

from contracts.artifacts import load_artifact
from contracts.localchain import DEV_PRIVATE_KEYS, LOCAL_CHAIN_ID, LocalChain
from contracts.signer import RevertDecoder, Signer, make_web3


@pytest.fixture(scope="module")
def evolve_anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    chain = LocalChain(Path(tmp_path_factory.mktemp("evolve-anvil")), port=0)
    chain.start()
    yield chain
    chain.stop()


@pytest.fixture
def evolve_signer(evolve_anvil: LocalChain) -> Callable[[int], Signer]:
    def make(index: int = 0) -> Signer:
        return Signer.from_private_key(
            make_web3(evolve_anvil.rpc_url), DEV_PRIVATE_KEYS[index], chain_id=LOCAL_CHAIN_ID
        )

    return make


def deploy_aggregator(signer: Signer, decimals: int, answer: int) -> str:
    """Deploy MockV3Aggregator(decimals, answer); returns its address."""
    artifact = load_artifact("MockV3Aggregator")
    data = artifact.bytecode + abi_encode(["uint8", "int256"], [decimals, answer]).hex()
    result = signer.send({"data": data}, RevertDecoder(artifact.abi))
    return Web3.to_checksum_address(signer.receipt(result.tx_hash)["contractAddress"])


def call_aggregator(signer: Signer, address: str, function: str, *args: object) -> None:
    """Operate the mock (updateAnswer / updateRoundData): what a Chainlink node's report does."""
    artifact = load_artifact("MockV3Aggregator")
    contract = signer.w3.eth.contract(address=address, abi=artifact.abi)
    data = contract.encode_abi(function, args=list(args))
    signer.send({"to": address, "data": data}, RevertDecoder(artifact.abi))
