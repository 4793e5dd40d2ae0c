"""Sizing an evolveBatch (`LivingNFTClient.fit_evolve_batch`): the one place batches are sized, used by
`evolve_batch` per transaction and by the evolution cycle per journal batch. Real anvil estimates."""

from __future__ import annotations

import pytest

from contracts.errors import TokenFrozenError


@pytest.fixture
def items(living_nft, funded_account, make_cid) -> list[tuple[int, str, int]]:
    tokens = [living_nft.mint(funded_account.address, make_cid(f"fit{i}")).token_id for i in range(12)]
    return [(t, make_cid(f"fit{t}-1"), 0) for t in tokens]


def test_the_longest_front_that_fits_the_per_transaction_budget(living_nft, items) -> None:
    buffer = living_nft.signer.policy.gas_buffer
    five = living_nft.estimate_evolve_batch(items[:5])
    budget = int(five * buffer)

    count, estimate = living_nft.fit_evolve_batch(items, gas_budget=budget)

    assert count == 5
    assert estimate == five
    assert int(living_nft.estimate_evolve_batch(items[:6]) * buffer) > budget  # one more would not fit
    assert living_nft.fit_evolve_batch(items) == (12, living_nft.estimate_evolve_batch(items))  # default: the cap


def test_what_is_left_of_a_cycle_budget_counts_the_estimate_without_buffer(living_nft, items) -> None:
    three = living_nft.estimate_evolve_batch(items[:3])
    one = living_nft.estimate_evolve_batch(items[:1])

    assert living_nft.fit_evolve_batch(items, gas_left=three) == (3, three)
    assert living_nft.fit_evolve_batch(items, gas_left=one - 1) == (0, one)  # spent: not even the first
    assert living_nft.fit_evolve_batch([]) == (0, 0)


def test_a_frozen_token_is_raised_as_it_is_not_taken_for_a_batch_too_large(living_nft, items) -> None:
    living_nft.freeze(items[7][0])
    with pytest.raises(TokenFrozenError) as frozen:
        living_nft.fit_evolve_batch(items, gas_budget=10_000_000)
    assert frozen.value.token_id == items[7][0]
    assert living_nft.fit_evolve_batch(items[:7])[0] == 7  # the tokens before it still fit
