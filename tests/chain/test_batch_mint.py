"""mintBatch on a real anvil, through the client: what a marketplace reads of a batch-minted token is what
it reads of a singly minted one, and the client sizes batches under a gas budget."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from contracts.client import BatchMintError, LivingNFTClient
from contracts.errors import ChainError, MissingRoleError, UnstorableCIDError
from contracts.signer import Signer


@pytest.fixture
def collector(chain_w3, funded_account) -> Signer:
    return Signer(chain_w3, funded_account, chain_id=31337)


def _logs(client: LivingNFTClient, tx_hash: str, event: str) -> list:
    receipt = client.signer.receipt(tx_hash)
    return list(getattr(client.contract.events, event)().process_receipt(receipt, errors=DISCARD))


def test_batch_minted_tokens_read_like_singly_minted_ones(living_nft, collector, make_cid):
    single = living_nft.mint(collector.address, make_cid("single")).token_id
    cids = [make_cid(f"drop-{i}") for i in range(10)]

    (result,) = living_nft.mint_batch(collector.address, cids)

    assert result.token_ids == list(range(single + 1, single + 11))
    assert result.metadata_cids == cids
    transfers = _logs(living_nft, result.tx_hash, "Transfer")
    assert [(e["args"]["from"], e["args"]["to"], e["args"]["tokenId"]) for e in transfers] == [
        ("0x0000000000000000000000000000000000000000", collector.address, t) for t in result.token_ids
    ]
    (refresh,) = _logs(living_nft, result.tx_hash, "BatchMetadataUpdate")
    assert (refresh["args"]["_fromTokenId"], refresh["args"]["_toTokenId"]) == (single + 1, single + 10)
    for token_id, cid in zip(result.token_ids, cids, strict=True):
        assert living_nft.owner_of(token_id) == collector.address
        assert living_nft.token_uri(token_id) == f"ipfs://{cid}"
        assert living_nft.metadata_version(token_id) == 0
        assert [(h.version, h.metadata_cid, h.tx_hash) for h in living_nft.history(token_id)] == [
            (0, cid, result.tx_hash)
        ]
        (mint,) = living_nft.transfers(token_id)
        assert mint.to_address == collector.address
    assert living_nft.contract.functions.balanceOf(collector.address).call() == 11
    assert living_nft.total_supply() == 11


def test_evolving_freezing_and_royalties_of_batch_minted_tokens(living_nft, collector, make_cid):
    (result,) = living_nft.mint_batch(collector.address, [make_cid(f"e-{i}") for i in range(8)])
    first = result.token_ids[0]
    single = living_nft.mint(collector.address, make_cid("lone")).token_id

    # The same evolution costs the same gas on a batch-minted token as on a singly minted one.
    on_batch = living_nft.evolve(first + 2, make_cid("e-2-v1"), 0)
    on_single = living_nft.evolve(single, make_cid("lone-v1"), 0)
    assert on_batch.gas_used <= on_single.gas_used
    living_nft.evolve_batch([(first + 2, make_cid("e-2-v2"), 1), (first + 5, make_cid("e-5-v1"), 0)])
    assert living_nft.metadata_version(first + 2) == 2
    assert living_nft.token_uri(first + 5) == "ipfs://" + make_cid("e-5-v1")
    assert [h.version for h in living_nft.history(first + 2)] == [0, 1, 2]

    owner_view = LivingNFTClient(collector, living_nft.address, from_block=living_nft.from_block)
    owner_view.freeze(first + 3)  # the owner may freeze, although the token has no owner slot of its own
    assert living_nft.is_frozen(first + 3)
    assert not living_nft.is_frozen(first + 4)
    living_nft.set_token_royalty(first + 6, collector.address, 250)
    assert living_nft.royalty_info(first + 6, 10_000) == (collector.address, 250)

    owner_view.transfer(living_nft.signer.address, first + 1)
    assert living_nft.owner_of(first + 1) == living_nft.signer.address
    assert [living_nft.owner_of(t) for t in (first, first + 2, first + 3)] == [collector.address] * 3


def test_mint_batch_is_split_under_a_gas_budget_and_journals_each_part(living_nft, collector, make_cid):
    cids = [make_cid(f"split-{i}") for i in range(12)]
    whole = living_nft.estimate_mint_batch(collector.address, cids)
    budget = 250_000
    broadcast: list[tuple[list[str], str, int]] = []

    results = living_nft.mint_batch(
        collector.address,
        cids,
        gas_budget=budget,
        before_broadcast=lambda part, tx_hash, nonce: broadcast.append((list(part), tx_hash, nonce)),
    )

    assert whole * living_nft.signer.policy.gas_buffer > budget
    assert len(results) > 1
    assert [cid for r in results for cid in r.metadata_cids] == cids
    assert [t for r in results for t in r.token_ids] == list(range(1, 13))
    assert [(part, tx) for part, tx, _ in broadcast] == [(r.metadata_cids, r.tx_hash) for r in results]
    for result in results:
        assert living_nft.w3.eth.get_transaction(result.tx_hash)["gas"] <= budget
    assert [living_nft.metadata_cid(t) for t in range(1, 13)] == cids


def test_mint_batch_refuses_bad_input_and_reports_parts_done(living_nft, collector, make_cid, chain_w3):
    assert living_nft.mint_batch(collector.address, []) == []
    with pytest.raises(UnstorableCIDError):
        living_nft.mint_batch(collector.address, [make_cid("ok"), "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"])
    with pytest.raises(ChainError, match="list of metadata CIDs"):
        living_nft.mint_batch(collector.address, make_cid("one"))  # type: ignore[arg-type]
    with pytest.raises(ChainError, match="above the gas budget"):
        living_nft.mint_batch(collector.address, [make_cid("tiny")], gas_budget=30_000)
    stranger = LivingNFTClient(collector, living_nft.address, from_block=living_nft.from_block)
    with pytest.raises(MissingRoleError):
        stranger.mint_batch(collector.address, [make_cid("no-role")])
    assert living_nft.total_supply() == 0

    # A part that fails after others were mined: the error holds the parts that went through. The minter
    # (another account than the admin) loses its role once its second part is signed.
    living_nft.grant_role("MINTER_ROLE", collector.address)
    minter = LivingNFTClient(collector, living_nft.address, from_block=living_nft.from_block)
    cids = [make_cid(f"p-{i}") for i in range(6)]
    parts: list[list[str]] = []

    def revoke_before_the_second_part(part, tx_hash, nonce):
        parts.append(list(part))
        if len(parts) == 2:
            living_nft.revoke_role("MINTER_ROLE", collector.address)

    with pytest.raises(BatchMintError) as partial:
        minter.mint_batch(collector.address, cids, gas_budget=200_000, before_broadcast=revoke_before_the_second_part)

    (done,) = partial.value.done
    assert done.metadata_cids == parts[0]
    assert [living_nft.metadata_cid(t) for t in done.token_ids] == parts[0]
    assert living_nft.total_supply() == len(parts[0])


def test_evolve_batch_refuses_a_bad_cid_before_sending_any_part(living_nft, collector, make_cid):
    # The sizing helper once took the client-side error of a bad CID for "too large to estimate", halved
    # the batch and sent the good half before failing on the bad one.
    (minted,) = living_nft.mint_batch(collector.address, [make_cid("g-0"), make_cid("g-1")])
    items = [(minted.token_ids[0], make_cid("g-0-v1"), 0), (minted.token_ids[1], "QmNotACidV1AtAll", 0)]
    with pytest.raises(UnstorableCIDError):
        living_nft.evolve_batch(items)
    assert [living_nft.metadata_version(t) for t in minted.token_ids] == [0, 0]
