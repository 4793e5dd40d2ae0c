"""Chainlink price feeds, read through the standard AggregatorV3Interface and nothing else.

Any aggregator (or proxy) address works: `decimals()` scales the answer and `latestRoundData()`'s
`updatedAt` decides staleness. A round with updatedAt = 0 is incomplete and a non-positive price is
not a price; both are errors, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from web3 import Web3

from evolve.errors import FeedConfigError, FeedStale, FeedUnreachable, FeedValueInvalid
from evolve.feeds.base import FeedResult, FeedValue, check_number

AGGREGATOR_V3_ABI = [
    {
        "type": "function",
        "name": "decimals",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint8"}],
    },
    {
        "type": "function",
        "name": "description",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "string"}],
    },
    {
        "type": "function",
        "name": "latestRoundData",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "roundId", "type": "uint80"},
            {"name": "answer", "type": "int256"},
            {"name": "startedAt", "type": "uint256"},
            {"name": "updatedAt", "type": "uint256"},
            {"name": "answeredInRound", "type": "uint80"},
        ],
    },
]


@dataclass
class ChainlinkFeed:
    """`address` of an AggregatorV3Interface on the chain `web3` talks to."""

    name: str
    address: str
    web3: Web3 | None = None
    max_age_s: float = 3600.0
    allow_non_positive: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def read(self, now: datetime) -> FeedResult:
        if self.web3 is None:
            return FeedConfigError(self.name, "no chain connection for this Chainlink feed")
        if not Web3.is_address(self.address):
            return FeedConfigError(self.name, f"'{self.address}' is not an address: check the feed's address")
        aggregator = self.web3.eth.contract(address=Web3.to_checksum_address(self.address), abi=AGGREGATOR_V3_ABI)
        try:
            decimals = aggregator.functions.decimals().call()
            round_id, answer, _started, updated_at, _answered_in = aggregator.functions.latestRoundData().call()
        except Exception as exc:  # any RPC or decoding failure is this feed's failure
            return FeedUnreachable(
                self.name,
                f"cannot read latestRoundData() at {self.address} ({type(exc).__name__}): is it an "
                "AggregatorV3Interface on this chain, and is the RPC up?",
            )
        if updated_at == 0:
            return FeedValueInvalid(self.name, f"round {round_id} is not complete (updatedAt = 0)")
        if answer <= 0 and not self.allow_non_positive:
            return FeedValueInvalid(self.name, f"answer {answer} is not a positive price")
        value = answer / 10**decimals
        problem = check_number(self.name, value, minimum=self.minimum, maximum=self.maximum)
        if problem is not None:
            return problem
        observed = datetime.fromtimestamp(updated_at, UTC)
        age = (now - observed).total_seconds()
        if age > self.max_age_s:
            return FeedStale(
                self.name,
                f"last update {age:.0f} s ago (round {round_id}), older than max_age_s = {self.max_age_s:g}: the "
                "aggregator has stopped updating (heartbeat missed)",
            )
        return FeedValue(
            feed=self.name,
            source=f"chainlink:{Web3.to_checksum_address(self.address)}@{self.web3.eth.chain_id}",
            fetched_at=datetime.now(UTC),
            value=value,
            observed_at=observed,
        )
