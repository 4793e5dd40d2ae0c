"""Sending transactions: fee cap, funds, chain id, unreachable RPC, nonce resync, gas buffer."""

from __future__ import annotations

import socket

import pytest
from eth_account import Account
from web3.exceptions import TransactionNotFound

from contracts.client import LivingNFTClient
from contracts.errors import (
    FeeCapExceededError,
    InsufficientFundsError,
    RPCUnavailableError,
    TransactionTimeoutError,
    WrongChainIdError,
)
from contracts.localchain import DEV_PRIVATE_KEYS
from contracts.signer import Signer, TxPolicy, make_web3
from tests.fixtures.http import FlakyProxy


def _nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def test_fee_cap_refuses_before_sending(living_nft, dev_signer, funded_account, make_cid):
    base_fee = living_nft.w3.eth.get_block("latest")["baseFeePerGas"]
    cap_gwei = base_fee / 2 / 1e9  # below the current base fee: no transaction can be priced under it
    capped = Signer(living_nft.w3, dev_signer.account, chain_id=31337, policy=TxPolicy(max_fee_gwei=cap_gwei))
    before = _nonce(living_nft.w3, dev_signer.address)

    with pytest.raises(FeeCapExceededError) as refused:
        LivingNFTClient(capped, living_nft.address).mint(funded_account.address, make_cid("fee"))

    assert "STUDIO_CHAIN__MAX_FEE_GWEI" in str(refused.value)
    assert _nonce(living_nft.w3, dev_signer.address) == before  # nothing was sent
    assert living_nft.total_supply() == 0


def test_fee_cap_limits_the_max_fee_paid(living_nft, dev_signer, funded_account, make_cid):
    base_fee = living_nft.w3.eth.get_block("latest")["baseFeePerGas"]
    cap_wei = base_fee + 2 * 10**9  # room for base fee + 1 gwei tip, but below 2 x base fee + tip
    capped = Signer(living_nft.w3, dev_signer.account, chain_id=31337, policy=TxPolicy(max_fee_gwei=cap_wei / 1e9))
    minted = LivingNFTClient(capped, living_nft.address).mint(funded_account.address, make_cid("capped"))
    tx = living_nft.w3.eth.get_transaction(minted.tx_hash)
    assert tx["maxFeePerGas"] <= cap_wei
    assert tx["gas"] >= minted.gas_used * 1.2  # the 1.25 buffer over the estimate


def test_insufficient_funds_is_refused_before_sending(living_nft, make_cid):
    poor = Account.create()
    living_nft.grant_role("MINTER_ROLE", poor.address)
    client = LivingNFTClient(Signer(living_nft.w3, poor, chain_id=31337), living_nft.address)

    with pytest.raises(InsufficientFundsError) as refused:
        client.mint(poor.address, make_cid("poor"))

    assert poor.address in str(refused.value)
    assert _nonce(living_nft.w3, poor.address) == 0
    assert living_nft.total_supply() == 0


def test_wrong_chain_id_refuses_to_send(living_nft, dev_signer, funded_account, make_cid):
    mainnet = Signer(living_nft.w3, dev_signer.account, chain_id=1)
    with pytest.raises(WrongChainIdError) as refused:
        LivingNFTClient(mainnet, living_nft.address).mint(funded_account.address, make_cid("wrong"))
    assert refused.value.expected == 1
    assert refused.value.actual == 31337
    assert living_nft.total_supply() == 0


def test_unreachable_rpc_gives_a_clear_error(make_cid):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    w3 = make_web3(f"http://127.0.0.1:{port}", timeout_s=2)
    signer = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[0], chain_id=31337)
    with pytest.raises(RPCUnavailableError) as refused:
        signer.check_chain_id()
    assert f"127.0.0.1:{port}" in str(refused.value)
    assert "STUDIO_CHAIN__RPC_URL" in str(refused.value)


def test_nonce_resyncs_after_another_tool_used_the_account(living_nft, funded_account, make_cid):
    living_nft.grant_role("MINTER_ROLE", funded_account.address)
    ours = LivingNFTClient(Signer(living_nft.w3, funded_account, chain_id=31337), living_nft.address)
    ours.mint(funded_account.address, make_cid("n1"))  # our nonce sequence now expects nonce 1

    # Another wallet sends from the same account behind our back, using nonce 1 and 2.
    for nonce in (1, 2):
        tx = {
            "to": funded_account.address,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "nonce": nonce,
            "chainId": 31337,
        }
        signed = funded_account.sign_transaction(tx)
        living_nft.w3.eth.wait_for_transaction_receipt(living_nft.w3.eth.send_raw_transaction(signed.raw_transaction))

    second = ours.mint(funded_account.address, make_cid("n2"))  # "nonce too low" -> resync -> nonce 3
    assert living_nft.w3.eth.get_transaction(second.tx_hash)["nonce"] == 3
    assert living_nft.metadata_cid(second.token_id) == make_cid("n2")


def test_before_broadcast_gets_the_hash_before_the_node_has_the_transaction(living_nft, funded_account):
    """What a crash-safe caller records first (the deploy does): the hash of the transaction that is then mined."""
    signer = Signer(living_nft.w3, funded_account, chain_id=31337)
    seen: list[tuple[str, int, bool]] = []

    def record(tx_hash: str, nonce: int) -> None:
        try:
            living_nft.w3.eth.get_transaction(tx_hash)
            known = True
        except TransactionNotFound:
            known = False
        seen.append((tx_hash, nonce, known))

    result = signer.send({"to": funded_account.address, "value": 1}, before_broadcast=record)

    assert seen == [(result.tx_hash, living_nft.w3.eth.get_transaction(result.tx_hash)["nonce"], False)]
    assert living_nft.w3.eth.get_transaction_receipt(result.tx_hash)["status"] == 1


def test_already_known_is_the_same_transaction_sent_not_a_reason_to_sign_again(living_nft, funded_account):
    """The node took a transaction but its answer was lost; the caller sends the same transaction again:
    same nonce, same fees, the same signed bytes, and the node answers "already known". That
    transaction is sent; signing it again at the next nonce would send it twice."""
    w3 = living_nft.w3
    proxy = FlakyProxy(w3.provider.endpoint_uri)
    # A short receipt timeout: nothing is mined until the test says so.
    signer = Signer(make_web3(proxy.url), funded_account, chain_id=31337, policy=TxPolicy(receipt_timeout_s=1))
    before = w3.eth.get_transaction_count(funded_account.address, "latest")
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        proxy.drop_on = ("eth_sendRawTransaction", "after")
        with pytest.raises(RPCUnavailableError):
            signer.send({"to": funded_account.address, "value": 7})
        proxy.up()
        with pytest.raises(TransactionTimeoutError) as waiting:
            signer.send({"to": funded_account.address, "value": 7})
        pending = w3.provider.make_request("txpool_content", [])["result"]["pending"]
        ours = next(v for k, v in pending.items() if k.lower() == funded_account.address.lower())
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        proxy.close()
    assert len(ours) == 1  # one transaction in the pool, not two
    (first,) = ours.values()
    assert waiting.value.tx_hash == first["hash"]  # the second send reports the first one's hash
    assert w3.eth.get_transaction_count(funded_account.address, "latest") == before + 1  # sent once
    assert w3.eth.get_transaction_receipt(first["hash"])["status"] == 1
