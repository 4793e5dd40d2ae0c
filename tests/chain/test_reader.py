"""LivingNFTReader: the reads a marketplace makes, on any network, with no signer."""

from __future__ import annotations

from contracts.reader import LivingNFTReader


def test_a_reader_without_a_signer_reads_what_the_client_wrote(living_nft, make_cid) -> None:
    owner = living_nft.signer.address
    minted = living_nft.mint(owner, make_cid("v0"))
    living_nft.evolve(minted.token_id, make_cid("v1"), 0)
    calls: list[int] = []
    reader = LivingNFTReader.connect(
        living_nft.w3.provider.endpoint_uri, living_nft.address, on_rpc_call=lambda: calls.append(1)
    )
    assert not hasattr(reader, "signer")
    assert reader.token_uri(minted.token_id) == f"ipfs://{make_cid('v1')}"
    assert (reader.metadata_version(minted.token_id), reader.is_frozen(minted.token_id)) == (1, False)
    assert reader.owner_of(minted.token_id) == owner
    assert reader.history(minted.token_id) == living_nft.history(minted.token_id)
    count, page = reader.history_page(minted.token_id, limit=1)
    assert (count, [change.version for change in page]) == (2, [1])  # newest first, one page
    assert len(calls) > 0  # every read of the chain went through the hook (the gallery's budget)
