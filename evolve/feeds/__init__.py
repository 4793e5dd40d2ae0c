"""Feeds: where evolution's data comes from. `build_feeds` turns a rules file's [feeds] into readers."""

from __future__ import annotations

from web3 import Web3

from evolve.feeds.activity import ActivityFeed
from evolve.feeds.base import Feed, FeedResult, FeedValue
from evolve.feeds.chainlink import ChainlinkFeed
from evolve.feeds.clock import ClockFeed
from evolve.feeds.http_json import HeaderSpec, HttpJsonFeed
from evolve.rules import HeaderFromEnv, Rules

__all__ = ["Feed", "FeedResult", "FeedValue", "build_feeds"]

RPC_TIMEOUT_S = 15


def build_feeds(
    rules: Rules,
    *,
    default_timezone: str = "UTC",
    web3: Web3 | None = None,
    contract_address: str | None = None,
    contract_from_block: int = 0,
) -> dict[str, Feed]:
    """One reader per feed of `rules`. `web3` is the studio's chain (Chainlink feeds without their own
    rpc_url, and on-chain activity of `contract_address`, whose events start at `contract_from_block`,
    its deployment: scanning a live chain from genesis would take hours)."""
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
            )
        elif spec.type == "chainlink":
            w3 = web3
            if spec.rpc_url:
                w3 = Web3(Web3.HTTPProvider(spec.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
            feeds[name] = ChainlinkFeed(
                name=name, address=spec.address, web3=w3, max_age_s=spec.max_age_s, minimum=spec.min, maximum=spec.max
            )
        elif spec.type == "clock":
            feeds[name] = ClockFeed(name=name, timezone=spec.timezone or default_timezone, hemisphere=spec.hemisphere)
        else:
            feeds[name] = ActivityFeed(
                name=name, contract_address=contract_address, web3=web3, from_block=contract_from_block
            )
    return feeds
