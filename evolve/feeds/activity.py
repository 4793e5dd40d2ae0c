"""On-chain activity of our own tokens: transfers, current holder and since when, from the
contract's ERC-721 `Transfer` events (the chain is the source of truth, not the studio's records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from eth_typing import ChecksumAddress
from web3 import Web3

from contracts.urls import redact_urls
from evolve.errors import FeedConfigError, FeedUnreachable
from evolve.feeds.base import FeedResult, FeedValue, Scalar

TRANSFER_TOPIC = Web3.keccak(text="Transfer(address,address,uint256)").to_0x_hex()
ZERO_ADDRESS = "0x" + "0" * 40
LOG_CHUNK_BLOCKS = 50_000


@dataclass
class ActivityFeed:
    """Per token: transfers (not counting the mint), holder, held_since, held_days."""

    name: str
    contract_address: str | None = None
    web3: Web3 | None = None
    from_block: int = 0

    def read(self, now: datetime) -> FeedResult:
        if self.web3 is None or not self.contract_address:
            return FeedConfigError(self.name, "no chain connection or contract address for the activity feed")
        try:
            address = Web3.to_checksum_address(self.contract_address)
            per_token = self._scan(self.web3, address, now)
        except Exception as exc:  # an RPC failure is this feed's failure
            # The message of a connection error quotes the RPC URL, whose path may hold an API key.
            detail = redact_urls(str(exc))[:300]
            return FeedUnreachable(self.name, f"cannot read Transfer events ({type(exc).__name__}: {detail})")
        return FeedValue(
            feed=self.name,
            source=f"transfers:{address}",
            fetched_at=datetime.now(UTC),
            per_token=per_token,
        )

    def _scan(self, w3: Web3, address: ChecksumAddress, now: datetime) -> dict[int, dict[str, Scalar | None]]:
        latest = w3.eth.block_number
        logs = []
        start = self.from_block
        while start <= latest:
            end = min(start + LOG_CHUNK_BLOCKS - 1, latest)
            logs.extend(
                w3.eth.get_logs({"address": address, "topics": [TRANSFER_TOPIC], "fromBlock": start, "toBlock": end})
            )
            start = end + 1
        logs.sort(key=lambda log: (log["blockNumber"], log["logIndex"]))
        block_times: dict[int, int] = {}
        per_token: dict[int, dict[str, Scalar | None]] = {}
        for log in logs:
            topics = log["topics"]
            sender = "0x" + bytes(topics[1])[-20:].hex()
            receiver = Web3.to_checksum_address("0x" + bytes(topics[2])[-20:].hex())
            token_id = int.from_bytes(bytes(topics[3]), "big")
            number = log["blockNumber"]
            if number not in block_times:
                block_times[number] = int(w3.eth.get_block(number)["timestamp"])
            entry = per_token.setdefault(token_id, {"transfers": 0, "holder": None, "held_since": None})
            if sender != ZERO_ADDRESS:
                entry["transfers"] = int(entry["transfers"] or 0) + 1
            entry["holder"] = receiver
            entry["held_since"] = block_times[number]
        for entry in per_token.values():
            since = datetime.fromtimestamp(int(entry["held_since"] or 0), UTC)
            entry["held_days"] = max(0.0, (now - since).total_seconds() / 86400)
            entry["held_since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        return per_token
