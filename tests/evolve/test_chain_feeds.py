"""Chain feeds on a real anvil: Chainlink's MockV3Aggregator read through AggregatorV3Interface, and
on-chain activity from the LivingNFT contract's Transfer events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contracts.client import LivingNFTClient
from contracts.signer import Signer
from evolve.errors import FeedConfigError, FeedRefused, FeedStale, FeedUnreachable, FeedValueInvalid
from evolve.feeds.activity import ActivityFeed
from evolve.feeds.base import FeedValue
from evolve.feeds.chainlink import ChainlinkFeed
from evolve.feeds.fetch import FetchPolicy
from tests.fixtures.evolve import call_aggregator, deploy_aggregator

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def chain_now(signer: Signer) -> datetime:
    return datetime.fromtimestamp(signer.w3.eth.get_block("latest")["timestamp"], UTC)


def test_chainlink_price_scaled_by_decimals_with_source(evolve_signer: Callable[[int], Signer]) -> None:
    signer = evolve_signer(0)
    address = deploy_aggregator(signer, 8, 2_345_67000000)  # 2345.67 USD with 8 decimals
    result = ChainlinkFeed(name="eth_usd", address=address, web3=signer.w3, max_age_s=3600).read(chain_now(signer))
    assert isinstance(result, FeedValue)
    assert result.value == 2345.67
    assert result.source == f"chainlink:{address}@31337"
    assert result.observed_at is not None

    call_aggregator(signer, address, "updateAnswer", 1_999_50000000)
    again = ChainlinkFeed(name="eth_usd", address=address, web3=signer.w3).read(chain_now(signer))
    assert isinstance(again, FeedValue)
    assert again.value == 1999.5


def test_chainlink_staleness_and_bad_rounds(evolve_signer: Callable[[int], Signer]) -> None:
    signer = evolve_signer(0)
    address = deploy_aggregator(signer, 8, 100_00000000)
    later = chain_now(signer) + timedelta(hours=2)
    stale = ChainlinkFeed(name="eth_usd", address=address, web3=signer.w3, max_age_s=3600).read(later)
    assert isinstance(stale, FeedStale)
    assert "heartbeat" in str(stale)

    now = int(chain_now(signer).timestamp())
    call_aggregator(signer, address, "updateRoundData", 7, -5, now, now)
    negative = ChainlinkFeed(name="eth_usd", address=address, web3=signer.w3).read(chain_now(signer))
    assert isinstance(negative, FeedValueInvalid)
    assert "not a positive price" in str(negative)

    call_aggregator(signer, address, "updateRoundData", 8, 5, 0, 0)
    incomplete = ChainlinkFeed(name="eth_usd", address=address, web3=signer.w3).read(chain_now(signer))
    assert isinstance(incomplete, FeedValueInvalid)
    assert "not complete" in str(incomplete)


def test_chainlink_wrong_address_or_no_chain_is_an_error(evolve_signer: Callable[[int], Signer]) -> None:
    signer = evolve_signer(0)
    not_a_feed = ChainlinkFeed(name="x", address="0x" + "12" * 20, web3=signer.w3).read(chain_now(signer))
    assert isinstance(not_a_feed, FeedUnreachable)
    assert "AggregatorV3Interface" in str(not_a_feed)
    assert isinstance(ChainlinkFeed(name="x", address="0x" + "12" * 20).read(datetime.now(UTC)), FeedConfigError)


def test_activity_counts_transfers_and_holding_time(evolve_signer: Callable[[int], Signer]) -> None:
    artist, collector, other = evolve_signer(0), evolve_signer(1), evolve_signer(2)
    client, _ = LivingNFTClient.deploy(
        artist, name="Living", symbol="LIVE", royalty_receiver=artist.address, royalty_bps=500
    )
    client.grant_role("MINTER_ROLE", artist.address)
    kept = client.mint(artist.address, CID).token_id
    traded = client.mint(collector.address, CID).token_id
    LivingNFTClient(collector, client.address).transfer(other.address, traded)

    feed = ActivityFeed(name="activity", contract_address=client.address, web3=artist.w3)
    moment = chain_now(artist) + timedelta(days=3)
    result = feed.read(moment)
    assert isinstance(result, FeedValue)
    assert result.per_token[kept]["transfers"] == 0
    assert result.per_token[kept]["holder"] == artist.address
    assert result.per_token[traded]["transfers"] == 1
    assert result.per_token[traded]["holder"] == other.address
    held = result.per_token[traded]["held_days"]
    assert isinstance(held, float)
    assert 2.9 < held < 3.1
    assert "per_token" in result.to_json()


def test_activity_with_rpc_down_is_an_error() -> None:
    from contracts.signer import make_web3

    feed = ActivityFeed(name="activity", contract_address="0x" + "12" * 20, web3=make_web3("http://127.0.0.1:9", 1))
    assert isinstance(feed.read(datetime.now(UTC)), FeedUnreachable)


def test_chainlink_on_its_own_rpc_url_is_checked_like_any_feed(
    evolve_signer: Callable[[int], Signer], flaky_proxy
) -> None:
    signer = evolve_signer(0)
    address = deploy_aggregator(signer, 8, 42_00000000)
    proxy = flaky_proxy(signer.w3.provider.endpoint_uri)  # another chain's RPC, with a key in its URL
    rpc_url = proxy.url + "/?key=SECRET-API-KEY"
    refused = ChainlinkFeed(name="p", address=address, rpc_url=rpc_url).read(chain_now(signer))
    assert isinstance(refused, FeedRefused), refused
    assert "127.0.0.1, a loopback address" in str(refused)
    assert proxy.forwarded == 0
    local = FetchPolicy(allow_private=True)
    result = ChainlinkFeed(name="p", address=address, rpc_url=rpc_url, policy=local).read(chain_now(signer))
    assert isinstance(result, FeedValue), result
    assert result.value == 42.0
    assert "SECRET" not in str(result.to_json())
    proxy.down = True
    down = ChainlinkFeed(name="p", address=address, rpc_url=rpc_url, policy=local).read(chain_now(signer))
    assert isinstance(down, FeedUnreachable)
    assert proxy.url in str(down)
    assert "SECRET" not in str(down)


def test_rpc_failures_name_the_rpc_by_its_origin_only() -> None:
    from contracts.signer import make_web3

    keyed = make_web3("http://127.0.0.1:9/v2/SECRET-API-KEY", 1)
    feed = ActivityFeed(name="activity", contract_address="0x" + "12" * 20, web3=keyed)
    result = feed.read(datetime.now(UTC))
    assert isinstance(result, FeedUnreachable)
    assert "SECRET" not in str(result)
