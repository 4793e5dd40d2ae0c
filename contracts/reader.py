"""A read-only view of one LivingNFT contract on any network: no signer, no key.

What a marketplace reads: tokenURI, the metadata version, whether a token is frozen, its owner, and
its history (the contract's MetadataSet events) and transfers. The collector gallery reads collections
on other networks through it; `LivingNFTClient` extends it with a signer for the studio's own writes.

Every read goes through `rpc_call` (timeouts, a readable RPCUnavailableError); a revert arrives as the
contract's own custom error, decoded. `on_rpc_call`, when given, runs before each read of the chain:
the public gallery uses it to bound the reads one request may make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from contracts.artifacts import ContractArtifact, load_artifact
from contracts.cid import folder_cid_from_digest, raw_cid_from_digest
from contracts.errors import ChainError, ContractRevertError, VersionMismatchError
from contracts.signer import ROLE_NAMES, RevertDecoder, make_web3, rpc_call, to_address


@dataclass(frozen=True)
class MetadataChange:
    """One entry of a token's metadata history, read from a MetadataSet event (version 0 = the mint)."""

    version: int
    metadata_cid: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


@dataclass(frozen=True)
class DropRecord:
    """The drop a token was minted in by mintDrop: its ids and its metadata folder (`<tokenId>.json` files)."""

    first_token_id: int
    last_token_id: int
    folder_cid: str


@dataclass(frozen=True)
class TransferRecord:
    """One ERC-721 Transfer of a token (the mint has from_address = 0x0)."""

    from_address: str
    to_address: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


@dataclass(frozen=True)
class FreezeRecord:
    """A token's freeze, read from its PermanentURI event: its metadata URI for ever after."""

    uri: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


class LivingNFTReader:
    """Reads one deployed LivingNFT contract (or any ERC-721 with MetadataSet events) through a Web3."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        from_block: int = 0,
        artifact: ContractArtifact | None = None,
        on_rpc_call: Callable[[], None] | None = None,
    ) -> None:
        self.w3 = w3
        self.artifact = artifact or load_artifact("LivingNFT")
        self.address: ChecksumAddress = to_address(address)
        self.from_block = from_block
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self.decoder = LivingNFTRevertDecoder(self.artifact.abi)
        self.on_rpc_call = on_rpc_call
        self._timestamps: dict[int, int] = {}

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        address: str,
        *,
        rpc_timeout_s: float = 15.0,
        from_block: int = 0,
        on_rpc_call: Callable[[], None] | None = None,
    ) -> LivingNFTReader:
        """A reader on the node at `rpc_url` (any network: nothing is signed)."""
        return cls(make_web3(rpc_url, rpc_timeout_s), address, from_block=from_block, on_rpc_call=on_rpc_call)

    # ----------------------------------------------------------------- reads

    def name(self) -> str:
        return str(self._call("name"))

    def has_role(self, role: str | bytes, account: str) -> bool:
        return bool(self._call("hasRole", role_id(role), to_address(account)))

    def token_uri(self, token_id: int) -> str:
        return str(self._call("tokenURI", int(token_id)))

    def metadata_cid(self, token_id: int) -> str | None:
        """The CID (bafkrei...) of the token's current metadata, or None while a token minted by mintDrop has
        never evolved: it still reads its drop folder's `<tokenId>.json` (see `drop_of`, `token_uri`; its
        history's version 0 names that file's CID)."""
        digest = bytes(self._call("metadataDigest", int(token_id)))
        return None if digest == bytes(32) else raw_cid_from_digest(digest)

    def drop_of(self, token_id: int) -> DropRecord | None:
        """The drop the token was minted in by mintDrop (even after it evolved), or None for a token minted
        by mint or mintBatch. An unknown id raises UnknownTokenError."""
        first, last, folder = self._call("dropOf", int(token_id))
        if int(first) == 0:
            return None
        return DropRecord(int(first), int(last), folder_cid_from_digest(bytes(folder)))

    def metadata_version(self, token_id: int) -> int:
        return int(self._call("metadataVersion", int(token_id)))

    def owner_of(self, token_id: int) -> str:
        return str(self._call("ownerOf", int(token_id)))

    def is_frozen(self, token_id: int) -> bool:
        return bool(self._call("isFrozen", int(token_id)))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def contract_uri(self) -> str:
        return str(self._call("contractURI"))

    def royalty_info(self, token_id: int, sale_price: int) -> tuple[str, int]:
        receiver, amount = self._call("royaltyInfo", int(token_id), int(sale_price))
        return str(receiver), int(amount)

    def supports_interface(self, interface_id: bytes | str) -> bool:
        value = HexBytes(interface_id)
        return bool(self._call("supportsInterface", bytes(value)))

    def history(self, token_id: int) -> list[MetadataChange]:
        """Every metadata version of a token, oldest first, from the contract's MetadataSet events alone."""
        return [self._change(log) for log in self._logs("MetadataSet", token_id)]

    def history_page(self, token_id: int, *, limit: int, offset: int = 0) -> tuple[int, list[MetadataChange]]:
        """(number of versions, one page of them, newest first): the events are read once, block times
        only for the page's versions."""
        newest_first = self._logs("MetadataSet", token_id)[::-1]
        return len(newest_first), [self._change(log) for log in newest_first[offset : offset + max(limit, 0)]]

    def transfers(self, token_id: int) -> list[TransferRecord]:
        """Every ERC-721 Transfer of a token, oldest first (the mint comes from the zero address)."""
        return [
            TransferRecord(
                from_address=str(log["args"]["from"]),
                to_address=str(log["args"]["to"]),
                block_number=int(log["blockNumber"]),
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                log_index=int(log["logIndex"]),
                timestamp=self._timestamp(int(log["blockNumber"])),
            )
            for log in self._logs("Transfer", token_id)
        ]

    def freezes(self, token_id: int) -> list[FreezeRecord]:
        """The token's PermanentURI event (none, or one: freezing is for ever)."""
        return [
            FreezeRecord(
                uri=str(log["args"]["_value"]),
                block_number=int(log["blockNumber"]),
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                log_index=int(log["logIndex"]),
                timestamp=self._timestamp(int(log["blockNumber"])),
            )
            for log in self._logs("PermanentURI", token_id)
        ]

    # ----------------------------------------------------------------- internals

    def _rpc(self, call: Callable[[], Any]) -> Any:
        if self.on_rpc_call is not None:
            self.on_rpc_call()
        return rpc_call(self.w3, call)

    def _call(self, function: str, *args: Any) -> Any:
        fn = getattr(self.contract.functions, function)(*args)
        try:
            return self._rpc(lambda: fn.call())
        except ContractLogicError as exc:
            decoded = self.decoder.decode(exc.data if isinstance(exc.data, str | bytes) else None)
            raise (decoded or ContractRevertError("unknown", {}, str(exc))) from None

    def _change(self, log: Any) -> MetadataChange:
        return MetadataChange(
            version=int(log["args"]["version"]),
            metadata_cid=raw_cid_from_digest(bytes(log["args"]["metadataDigest"])),
            block_number=int(log["blockNumber"]),
            tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
            log_index=int(log["logIndex"]),
            timestamp=self._timestamp(int(log["blockNumber"])),
        )

    def _logs(self, event: str, token_id: int) -> list[Any]:
        """Logs of `event` whose token id topic equals token_id, sorted by position in the chain."""
        event_obj = getattr(self.contract.events, event)()
        topic0 = HexBytes(keccak(text=event_obj.abi_element_identifier)).to_0x_hex()
        token_topic = "0x" + int(token_id).to_bytes(32, "big").hex()
        # MetadataSet and PermanentURI index the token id first; Transfer indexes it third.
        first = event in ("MetadataSet", "PermanentURI")
        topics: list[Any] = [topic0, token_topic] if first else [topic0, None, None, token_topic]
        raw = self._rpc(
            lambda: self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": self.from_block, "toBlock": "latest", "topics": topics}
            ),
        )
        decoded = [event_obj.process_log(entry) for entry in raw]
        return sorted(decoded, key=lambda log: (log["blockNumber"], log["logIndex"]))

    def _timestamp(self, block_number: int) -> int:
        if block_number not in self._timestamps:
            block = self._rpc(lambda: self.w3.eth.get_block(block_number))
            self._timestamps[block_number] = int(block["timestamp"])
        return self._timestamps[block_number]


def role_id(role: str | bytes) -> bytes:
    """The 32-byte AccessControl id of a role given by name (MINTER_ROLE...) or as 32 bytes / hex."""
    if isinstance(role, bytes):
        if len(role) != 32:
            raise ChainError(f"a role id has 32 bytes, got {len(role)}")
        return role
    if role in ROLE_NAMES:
        return ROLE_NAMES[role]
    value = HexBytes(role) if role.startswith("0x") else b""
    if len(value) == 32:
        return bytes(value)
    raise ChainError(f"unknown role {role!r}: use MINTER_ROLE, EVOLVER_ROLE or DEFAULT_ADMIN_ROLE")


class LivingNFTRevertDecoder(RevertDecoder):
    """RevertDecoder that also knows LivingNFT's own errors worth a class of their own."""

    def decode(self, data: bytes | str | None) -> ContractRevertError | None:
        decoded = super().decode(data)
        if (
            decoded is not None
            and decoded.error_name == "VersionMismatch"
            and {"tokenId", "expected", "actual"} <= set(decoded.error_args)
        ):
            args = decoded.error_args
            return VersionMismatchError(int(args["tokenId"]), int(args["expected"]), int(args["actual"]))
        return decoded
