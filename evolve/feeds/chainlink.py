"""Chainlink price feeds, read through the standard AggregatorV3Interface and nothing else.

Any aggregator (or proxy) address works: `decimals()` scales the answer and `latestRoundData()`'s
`updatedAt` decides staleness. A round with updatedAt = 0 is incomplete and a non-positive price is
not a price; both are errors, never values.

A feed with its own `rpc_url` (another chain) talks JSON-RPC through evolve/feeds/fetch.py, like an
HTTP feed: address checks on every connection, one deadline for the whole read, a size cap and a
depth-checked parse of every answer. Messages name that RPC by its origin only (keys live in paths).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from web3 import Web3
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from contracts.urls import redact_url, redact_urls
from evolve.errors import FeedConfigError, FeedRefused, FeedStale, FeedUnreachable, FeedValueInvalid
from evolve.feeds.base import FeedResult, FeedValue, check_number
from evolve.feeds.fetch import DEADLINE_SETTING, FetchDeadline, FetchPolicy, FetchRefused, FetchUnavailable, fetch
from metadata.errors import BoundedJSONError
from metadata.jsonsafe import load_json_bounded

RPC_TIMEOUT_S = 15.0

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


class GuardedRPCProvider(JSONBaseProvider):
    """JSON-RPC over fetch(): what a rules file's rpc_url may reach is checked like any feed URL, and
    every call of one feed read shares that read's deadline."""

    def __init__(self, url: str, policy: FetchPolicy, deadline: float, timeout_s: float = RPC_TIMEOUT_S) -> None:
        super().__init__()
        self.url = url
        self.policy = policy
        self.deadline = deadline
        self.timeout_s = timeout_s

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = fetch(
            self.url,
            policy=self.policy,
            deadline=self.deadline,
            timeout_s=self.timeout_s,
            headers={"Content-Type": "application/json"},
            method="POST",
            content=self.encode_rpc_request(method, params),
        )
        if answer.status >= 300:
            raise FetchUnavailable(f"HTTP {answer.status} from {redact_url(self.url)}")
        reply = load_json_bounded(
            answer.body, max_bytes=self.policy.max_body_bytes, what=f"the answer of {redact_url(self.url)}"
        )
        if not isinstance(reply, dict):
            raise FetchUnavailable(
                f"{redact_url(self.url)} answered JSON-RPC with {type(reply).__name__}, not an object"
            )
        return cast(RPCResponse, reply)

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except Exception:
            if show_traceback:
                raise
            return False
        return True


@dataclass
class ChainlinkFeed:
    """`address` of an AggregatorV3Interface on the chain `web3` talks to, or on the chain at
    `rpc_url` (reached under `policy`)."""

    name: str
    address: str
    web3: Web3 | None = None
    max_age_s: float = 3600.0
    allow_non_positive: bool = False
    minimum: float | None = None
    maximum: float | None = None
    rpc_url: str | None = None
    policy: FetchPolicy = field(default_factory=FetchPolicy)

    def _chain(self) -> tuple[Web3 | None, str]:
        """The Web3 of this read and how messages name it."""
        if self.rpc_url is None:
            return self.web3, "the studio's chain"
        provider = GuardedRPCProvider(self.rpc_url, self.policy, time.monotonic() + self.policy.deadline_s)
        return Web3(provider), redact_url(self.rpc_url)

    def read(self, now: datetime) -> FeedResult:
        w3, where = self._chain()
        if w3 is None:
            return FeedConfigError(self.name, "no chain connection for this Chainlink feed")
        if not Web3.is_address(self.address):
            return FeedConfigError(self.name, f"'{self.address}' is not an address: check the feed's address")
        aggregator = w3.eth.contract(address=Web3.to_checksum_address(self.address), abi=AGGREGATOR_V3_ABI)
        try:
            decimals = aggregator.functions.decimals().call()
            round_id, answer, _started, updated_at, _answered_in = aggregator.functions.latestRoundData().call()
            chain_id = w3.eth.chain_id
        except FetchRefused as exc:
            return FeedRefused(self.name, str(exc))
        except FetchDeadline:
            return FeedUnreachable(
                self.name,
                f"{where}: no complete answer within the feed deadline of {self.policy.deadline_s:g} s "
                f"({DEADLINE_SETTING}); the next cycle tries again",
            )
        except BoundedJSONError as exc:
            return FeedUnreachable(self.name, f"{where}: {exc}")
        except Exception as exc:  # any RPC or decoding failure is this feed's failure
            return FeedUnreachable(
                self.name,
                f"cannot read latestRoundData() at {self.address} on {where} ({type(exc).__name__}: "
                f"{redact_urls(str(exc))[:300]}): is it an AggregatorV3Interface on this chain, and is the RPC up?",
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
            source=f"chainlink:{Web3.to_checksum_address(self.address)}@{chain_id}",
            fetched_at=datetime.now(UTC),
            value=value,
            observed_at=observed,
        )
