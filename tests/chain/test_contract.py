"""LivingNFT on a real anvil: roles, interfaces, events, tokenURI, versions, freeze, royalties, batches."""

from __future__ import annotations

import hashlib
import os

import pytest
from eth_utils import keccak
from hexbytes import HexBytes
from web3.logs import DISCARD

from contracts.cid import raw_cid_digest, raw_cid_from_digest, raw_cid_of
from contracts.client import LivingNFTClient
from contracts.errors import (
    ChainError,
    ContractRevertError,
    InvalidAddressError,
    MissingRoleError,
    TokenFrozenError,
    UnknownTokenError,
    UnstorableCIDError,
    VersionMismatchError,
)
from contracts.signer import Signer


def _as(client: LivingNFTClient, signer: Signer) -> LivingNFTClient:
    """The same contract, seen through another account."""
    return LivingNFTClient(signer, client.address, from_block=client.from_block)


@pytest.fixture
def stranger(chain_w3, funded_account) -> Signer:
    return Signer(chain_w3, funded_account, chain_id=31337)


def test_mint_returns_sequential_ids_and_token_uri_is_the_cid(living_nft, stranger, make_cid):
    first = living_nft.mint(stranger.address, make_cid("a"))
    second = living_nft.mint(stranger.address, make_cid("b"))

    assert (first.token_id, second.token_id) == (1, 2)
    assert living_nft.owner_of(1) == stranger.address
    assert living_nft.token_uri(1) == "ipfs://" + make_cid("a")
    assert living_nft.metadata_cid(2) == make_cid("b")
    assert living_nft.metadata_version(2) == 0
    assert living_nft.total_supply() == 2


def test_token_uri_renders_base32_cid_for_any_digest(living_nft, stranger):
    # Digests with edge bits (all zero but one, all ones) and random ones must match Python's base32.
    digests = [b"\x00" * 31 + b"\x01", b"\xff" * 32, b"\x80" + b"\x00" * 31] + [os.urandom(32) for _ in range(5)]
    for digest in digests:
        cid = raw_cid_from_digest(digest)
        token = living_nft.mint(stranger.address, cid).token_id
        assert living_nft.token_uri(token) == f"ipfs://{cid}"
        assert cid.startswith("bafkrei")
        assert raw_cid_digest(cid) == digest


def test_roles_are_enforced_both_ways(living_nft, stranger, make_cid):
    as_stranger = _as(living_nft, stranger)
    with pytest.raises(MissingRoleError) as refused:
        as_stranger.mint(stranger.address, make_cid("x"))
    assert refused.value.role_name == "MINTER_ROLE"
    assert refused.value.account == stranger.address
    assert "MINTER_ROLE" in str(refused.value)

    token = living_nft.mint(stranger.address, make_cid("x")).token_id
    with pytest.raises(MissingRoleError) as refused_evolve:
        as_stranger.evolve(token, make_cid("y"), 0)
    assert refused_evolve.value.role_name == "EVOLVER_ROLE"
    with pytest.raises(MissingRoleError):
        as_stranger.evolve_batch([(token, make_cid("y"), 0)])
    with pytest.raises(MissingRoleError):
        as_stranger.grant_role("MINTER_ROLE", stranger.address)
    with pytest.raises(MissingRoleError):
        as_stranger.set_contract_uri("ipfs://nope")

    living_nft.grant_role("MINTER_ROLE", stranger.address)
    living_nft.grant_role("EVOLVER_ROLE", stranger.address)
    assert living_nft.has_role("MINTER_ROLE", stranger.address)
    minted = as_stranger.mint(stranger.address, make_cid("z"))
    as_stranger.evolve(minted.token_id, make_cid("z2"), 0)
    assert living_nft.metadata_cid(minted.token_id) == make_cid("z2")

    living_nft.revoke_role("MINTER_ROLE", stranger.address)
    assert not living_nft.has_role("MINTER_ROLE", stranger.address)
    with pytest.raises(MissingRoleError):
        as_stranger.mint(stranger.address, make_cid("again"))


def test_erc165_interfaces(living_nft):
    for interface_id in ("0x80ac58cd", "0x5b5e139f", "0x2a55205a", "0x49064906", "0x7965db0b", "0x01ffc9a7"):
        assert living_nft.supports_interface(interface_id), interface_id
    assert not living_nft.supports_interface("0xffffffff")
    assert not living_nft.supports_interface("0x780e9d63")  # ERC721Enumerable is not implemented


def test_mint_and_evolve_events_carry_their_arguments(living_nft, stranger, make_cid):
    minted = living_nft.mint(stranger.address, make_cid("v0"))
    receipt = living_nft.signer.receipt(minted.tx_hash)
    events = living_nft.contract.events
    metadata_set = events.MetadataSet().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.tokenId, e.args.version, bytes(e.args.metadataDigest)) for e in metadata_set] == [
        (minted.token_id, 0, raw_cid_digest(make_cid("v0")))
    ]
    assert [e.args._tokenId for e in events.MetadataUpdate().process_receipt(receipt, errors=DISCARD)] == [
        minted.token_id
    ]
    transfer = events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert [(t.args["from"], t.args.to, t.args.tokenId) for t in transfer] == [
        ("0x" + "00" * 20, stranger.address, minted.token_id)
    ]

    evolved = living_nft.evolve(minted.token_id, make_cid("v1"), 0)
    receipt = living_nft.signer.receipt(evolved.tx_hash)
    metadata_set = events.MetadataSet().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.tokenId, e.args.version) for e in metadata_set] == [(minted.token_id, 1)]
    assert len(events.MetadataUpdate().process_receipt(receipt, errors=DISCARD)) == 1

    refreshed = living_nft.refresh_all()
    batch = events.BatchMetadataUpdate().process_receipt(living_nft.signer.receipt(refreshed.tx_hash), errors=DISCARD)
    assert [(b.args._fromTokenId, b.args._toTokenId) for b in batch] == [(0, 2**256 - 1)]

    updated = living_nft.set_contract_uri("ipfs://bafkreinewcollection")
    assert events.ContractURIUpdated().process_receipt(living_nft.signer.receipt(updated.tx_hash), errors=DISCARD)
    assert living_nft.contract_uri() == "ipfs://bafkreinewcollection"


def test_versions_are_independent_per_token_across_version_words(living_nft, stranger, make_cid):
    # Tokens 1..9 span three version words (four tokens share one); each keeps its own count.
    for i in range(9):
        living_nft.mint(stranger.address, make_cid(f"t{i}"))
    expected = {}
    for token in range(1, 10):
        for n in range(token % 4):
            living_nft.evolve(token, make_cid(f"t{token}-{n}"), n)
        expected[token] = token % 4
    assert {t: living_nft.metadata_version(t) for t in range(1, 10)} == expected

    # A transfer of a word's anchor token (1) keeps its neighbours' versions and frozen flags.
    living_nft.freeze(3)
    _as(living_nft, stranger).transfer(living_nft.signer.address, 1)
    assert living_nft.owner_of(1) == living_nft.signer.address
    assert {t: living_nft.metadata_version(t) for t in range(1, 10)} == expected
    assert [living_nft.is_frozen(t) for t in range(1, 5)] == [False, False, True, False]


def test_freeze_is_permanent_and_emits_permanent_uri(living_nft, stranger, make_cid):
    token = living_nft.mint(stranger.address, make_cid("art")).token_id
    neighbour = living_nft.mint(stranger.address, make_cid("neighbour")).token_id

    with pytest.raises(ContractRevertError) as not_owner:  # neither the owner nor an admin
        _as(living_nft, Signer(living_nft.w3, _fresh_funded(living_nft), chain_id=31337)).freeze(token)
    assert not_owner.value.error_name == "NotOwnerOrAdmin"

    frozen = _as(living_nft, stranger).freeze(token)  # the owner may freeze
    receipt = living_nft.signer.receipt(frozen.tx_hash)
    permanent = living_nft.contract.events.PermanentURI().process_receipt(receipt, errors=DISCARD)
    assert [(p.args._value, p.args._id) for p in permanent] == [("ipfs://" + make_cid("art"), token)]
    assert living_nft.is_frozen(token)
    assert not living_nft.is_frozen(neighbour)
    # The client reads the freeze back from the logs, for the token's on-chain history.
    [record] = living_nft.freezes(token)
    assert (record.uri, record.tx_hash) == ("ipfs://" + make_cid("art"), frozen.tx_hash)
    assert living_nft.freezes(neighbour) == []

    with pytest.raises(TokenFrozenError) as refused:
        living_nft.evolve(token, make_cid("changed"), 0)
    assert refused.value.error_name == "TokenFrozen"
    assert refused.value.error_args == {"tokenId": token}
    with pytest.raises(TokenFrozenError):
        living_nft.evolve_batch([(neighbour, make_cid("n1"), 0), (token, make_cid("changed"), 0)])
    with pytest.raises(TokenFrozenError):
        living_nft.freeze(token)
    assert living_nft.metadata_cid(token) == make_cid("art")
    assert living_nft.metadata_version(neighbour) == 0  # the reverted batch changed nothing

    living_nft.evolve(neighbour, make_cid("n1"), 0)  # the admin may still evolve others
    living_nft.freeze(neighbour)  # and may freeze tokens it does not own
    assert living_nft.is_frozen(neighbour)


def test_evolve_is_compare_and_set_on_the_expected_version(living_nft, stranger, make_cid):
    token = living_nft.mint(stranger.address, make_cid("cas")).token_id
    neighbour = living_nft.mint(stranger.address, make_cid("cas-n")).token_id
    living_nft.evolve(token, make_cid("cas-1"), 0)

    # A second evolver that still believes the token is at version 0 (it built on the mint) is refused.
    with pytest.raises(VersionMismatchError) as stale:
        living_nft.evolve(token, make_cid("stale"), 0)
    assert (stale.value.token_id, stale.value.expected, stale.value.actual) == (token, 0, 1)
    assert stale.value.error_name == "VersionMismatch"
    assert f"token {token} is at version 1 on chain, not 0" in str(stale.value)
    with pytest.raises(VersionMismatchError):  # ahead of the chain is refused too
        living_nft.evolve(token, make_cid("ahead"), 2)

    # In a batch, one stale token reverts the whole transaction: the fresh neighbour is untouched too.
    items = [(neighbour, make_cid("n-1"), 0), (token, make_cid("stale-b"), 0)]
    with pytest.raises(VersionMismatchError) as stale_batch:
        living_nft.estimate_evolve_batch(items)
    assert (stale_batch.value.token_id, stale_batch.value.actual) == (token, 1)
    with pytest.raises(VersionMismatchError):
        living_nft.evolve_batch(items)
    assert [living_nft.metadata_version(t) for t in (token, neighbour)] == [1, 0]
    assert living_nft.metadata_cid(token) == make_cid("cas-1")

    # A repeated id in one batch builds on its own first change.
    living_nft.evolve_batch([(token, make_cid("r-2"), 1), (token, make_cid("r-3"), 2), (neighbour, make_cid("n"), 0)])
    assert [(h.version, h.metadata_cid) for h in living_nft.history(token)][-2:] == [
        (2, make_cid("r-2")),
        (3, make_cid("r-3")),
    ]
    with pytest.raises(ChainError, match="expected current version"):
        living_nft.evolve_batch([(token, make_cid("no-version"))])  # type: ignore[list-item]
    with pytest.raises(ChainError, match="0 or more"):
        living_nft.evolve(token, make_cid("negative"), -1)


def _fresh_funded(client: LivingNFTClient):
    from eth_account import Account

    account = Account.create()
    client.signer.send({"to": account.address, "value": 10**18})
    return account


def test_royalty_default_and_per_token(living_nft, stranger, make_cid):
    token = living_nft.mint(stranger.address, make_cid("r")).token_id
    other = living_nft.mint(stranger.address, make_cid("r2")).token_id
    assert living_nft.royalty_info(token, 10_000) == (living_nft.signer.address, 500)

    living_nft.set_token_royalty(token, stranger.address, 1_000)
    assert living_nft.royalty_info(token, 10_000) == (stranger.address, 1_000)
    assert living_nft.royalty_info(other, 10_000) == (living_nft.signer.address, 500)

    living_nft.set_default_royalty(stranger.address, 250)
    assert living_nft.royalty_info(other, 1_000_000) == (stranger.address, 25_000)
    with pytest.raises(ContractRevertError) as too_high:
        living_nft.set_default_royalty(stranger.address, 10_001)
    assert too_high.value.error_name == "ERC2981InvalidDefaultRoyalty"


def test_batch_evolve_and_history_from_events(living_nft, stranger, make_cid):
    tokens = [living_nft.mint(stranger.address, make_cid(f"h{i}")).token_id for i in range(6)]
    living_nft.evolve(tokens[0], make_cid("h0-1"), 0)
    results = living_nft.evolve_batch([(t, make_cid(f"{t}-b"), 1 if t == tokens[0] else 0) for t in tokens])
    assert len(results) == 1

    receipt = living_nft.signer.receipt(results[0].tx_hash)
    batch = living_nft.contract.events.BatchMetadataUpdate().process_receipt(receipt, errors=DISCARD)
    assert [(b.args._fromTokenId, b.args._toTokenId) for b in batch] == [(tokens[0], tokens[-1])]

    history = living_nft.history(tokens[0])
    assert [(h.version, h.metadata_cid) for h in history] == [
        (0, make_cid("h0")),
        (1, make_cid("h0-1")),
        (2, make_cid(f"{tokens[0]}-b")),
    ]
    assert history[-1].tx_hash == results[0].tx_hash
    assert all(h.timestamp > 0 for h in history)
    assert [h.block_number for h in history] == sorted(h.block_number for h in history)
    assert [(h.version, h.metadata_cid) for h in living_nft.history(tokens[3])] == [
        (0, make_cid("h3")),
        (1, make_cid(f"{tokens[3]}-b")),
    ]
    assert living_nft.history(999) == []


def test_batch_is_split_under_a_small_gas_budget(living_nft, stranger, make_cid):
    tokens = [living_nft.mint(stranger.address, make_cid(f"s{i}")).token_id for i in range(30)]
    items = [(t, make_cid(f"s{t}-1"), 0) for t in tokens]
    whole = living_nft.estimate_evolve_batch(items)
    budget = 150_000

    results = living_nft.evolve_batch(items, gas_budget=budget)

    assert whole * living_nft.signer.policy.gas_buffer > budget
    assert len(results) > 1
    for result in results:
        tx = living_nft.w3.eth.get_transaction(result.tx_hash)
        assert tx["gas"] <= budget
    assert [living_nft.metadata_cid(t) for t in tokens] == [cid for _, cid, _ in items]
    assert {living_nft.metadata_version(t) for t in tokens} == {1}


def test_bad_input_is_refused_with_named_errors(living_nft, stranger, make_cid):
    with pytest.raises(InvalidAddressError):
        living_nft.mint("0x1234", make_cid("a"))
    with pytest.raises(InvalidAddressError):  # wrong EIP-55 checksum
        living_nft.mint(stranger.address.lower()[:-1] + "A", make_cid("a"))
    with pytest.raises(InvalidAddressError):  # one letter of a checksummed address flipped
        living_nft.mint(_flip_one_letter(stranger.address), make_cid("a"))
    with pytest.raises(UnstorableCIDError):
        living_nft.mint(stranger.address, "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
    with pytest.raises(UnstorableCIDError):  # dag-pb CIDv1, not raw
        living_nft.mint(stranger.address, "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
    with pytest.raises(UnknownTokenError) as unknown:
        living_nft.evolve(42, make_cid("a"), 0)
    assert "token 42 does not exist" in str(unknown.value)
    for read in (living_nft.token_uri, living_nft.owner_of, living_nft.metadata_version, living_nft.is_frozen):
        with pytest.raises(UnknownTokenError):
            read(42)
    assert living_nft.total_supply() == 0  # nothing was minted by the refused calls
    assert raw_cid_of(b"x") == raw_cid_from_digest(hashlib.sha256(b"x").digest())
    assert HexBytes(keccak(text="MINTER_ROLE")) == HexBytes(living_nft.contract.functions.MINTER_ROLE().call())


def _flip_one_letter(address: str) -> str:
    index = next(i for i, ch in enumerate(address) if i > 1 and ch.isalpha())
    return address[:index] + address[index].swapcase() + address[index + 1 :]
