"""Feeds: where evolution's data comes from. `build_feeds` turns a rules file's [feeds] into readers."""

from __future__ import annotations

from web3 import Web3

from evolve.feeds.activity import ActivityFeed
from evolve.feeds.base import Feed, FeedResult, FeedValue
from evolve.feeds.chainlink import ChainlinkFeed
from evolve.feeds.clock import ClockFeed
from evolve.feeds.fetch import FetchPolicy
from evolve.feeds.http_json import HeaderSpec, HttpJsonFeed
from studio.rules import HeaderFromEnv, Rules

__all__ = ["Feed", "FeedResult", "FeedValue", "FetchPolicy", "build_feeds"]


def build_feeds(
    rules: Rules,
    *,
    default_timezone: str = "UTC",
    web3: Web3 | None = None,
    contract_address: str | None = None,
    contract_from_block: int = 0,
    policy: FetchPolicy | None = None,
) -> dict[str, Feed]:
    """One reader per feed of `rules`. `web3` is the studio's chain (Chainlink feeds without their own
    rpc_url, and on-chain activity of `contract_address`, whose events start at `contract_from_block`,
    its deployment: scanning a live chain from genesis would take hours). `policy` says what outside
    requests may reach and read (FetchPolicy.from_settings(settings.evolve)); the default refuses
    private addresses and allows no secrets."""
    policy = policy or FetchPolicy()
    feeds: dict[str, Feed] = {}
    for name, spec in rules.feeds.items():
        if spec.type == "http_json":
            headers = [
                HeaderSpec(name=key, env=value.env, format=value.format)
                if isinstance(value, HeaderFromEnv)
                else HeaderSpec(name=key, value=value)
                for key, value in spec.headers.items()
            ]
            params = [
                HeaderSpec(name=key, env=value.env, format=value.format)
                if isinstance(value, HeaderFromEnv)
                else HeaderSpec(name=key, value=value)
                for key, value in spec.params.items()
            ]
            feeds[name] = HttpJsonFeed(
                name=name,
                url=spec.url,
                path=spec.path,
                value_type=spec.value_type,
                headers=headers,
                params=params,
                timeout_s=spec.timeout_s,
                retries=spec.retries,
                max_age_s=spec.max_age_s,
                timestamp_path=spec.timestamp_path,
                minimum=spec.min,
                maximum=spec.max,
                policy=policy,
            )
        elif spec.type == "chainlink":
            feeds[name] = ChainlinkFeed(
                name=name,
                address=spec.address,
                web3=None if spec.rpc_url else web3,
                max_age_s=spec.max_age_s,
                minimum=spec.min,
                maximum=spec.max,
                rpc_url=spec.rpc_url,
                policy=policy,
            )
        elif spec.type == "clock":
            feeds[name] = ClockFeed(name=name, timezone=spec.timezone or default_timezone, hemisphere=spec.hemisphere)
        else:
            feeds[name] = ActivityFeed(
                name=name, contract_address=contract_address, web3=web3, from_block=contract_from_block
            )
    return feeds
